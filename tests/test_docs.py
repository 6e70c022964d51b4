"""The documentation keeps up with the code: every recipe, model type, importer and CLI command is named in
docs/, and every relative link in the README and docs/ points at a file that exists."""

from __future__ import annotations

import re

import click

from conftest import REPO

DOCS = REPO / "docs"
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def _commands(group: click.Group, prefix: str = "semlat") -> list[str]:
    names = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names += _commands(command, f"{prefix} {name}")
        else:
            names.append(f"{prefix} {name}")
    return names


def test_every_recipe_model_type_and_importer_is_in_the_architecture_page():
    from semlat.models import IMPORTERS, MODEL_TYPES
    from semlat.training.recipes import RECIPES

    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    missing = [f"recipe {n}" for n in RECIPES if f"`{n}`" not in text]
    missing += [f"model type {n}" for n in MODEL_TYPES if f"`{n}`" not in text]
    missing += [f"importer {n}" for n in IMPORTERS if f"`{n}`" not in text]
    assert not missing, f"docs/architecture.md does not name: {', '.join(missing)}"


def test_every_model_type_has_its_section_in_the_models_page():
    from semlat.models import MODEL_TYPES

    text = (DOCS / "models.md").read_text(encoding="utf-8")
    missing = [name for name in MODEL_TYPES if f"(`model_type: {name}`" not in text]
    assert not missing, f"docs/models.md has no section for: {', '.join(missing)}"


def test_every_cli_command_is_in_the_command_index():
    from semlat.cli import cli

    index = (DOCS / "cli.md").read_text(encoding="utf-8")
    # "semlat eval recon" may be written "eval recon" after its group's first full name in the same cell
    missing = [c for c in _commands(cli) if f"`{c}`" not in index and f"`{c.split(' ', 1)[1]}`" not in index]
    assert not missing, f"docs/cli.md does not list: {', '.join(missing)}"
    assert len(_commands(cli)) > 25


def test_relative_links_point_at_files_that_exist():
    broken = []
    for page in [REPO / "README.md", REPO / "CHANGELOG.md", REPO / "NOTICE.md", REPO / "benchmarks" / "README.md",
                 *DOCS.glob("*.md")]:
        for target, _ in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, "broken links: " + "; ".join(broken)


def test_the_readme_stays_a_front_door():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the reference belongs in docs/"
    for required in ("LICENSE", "docs/architecture.md", "## Quickstart"):
        assert any(required in line for line in lines), required


def test_every_benchmark_figure_section_names_its_machine_and_date():
    """benchmarks/README.md: each measured section says on which machine and when; each script prints it."""
    text = (REPO / "benchmarks" / "README.md").read_text(encoding="utf-8")
    sections = [line for line in text.splitlines() if line.startswith("**") and "**" in line[2:]]
    undated = [s[:60] for s in sections if not re.search(r"machine [AB]|same run", s)]
    assert sections and not undated, f"sections without machine and date: {undated}"
    for script in (REPO / "benchmarks").glob("bench_*.py"):
        assert "print(machine())" in script.read_text(encoding="utf-8"), script.name
