"""The package's layers and the absence of import cycles, as import-linter contracts (pyproject.toml).

The contracts run over the installed source; a copy of the package with one upward import, and one
with a cycle, must each break them (so the contracts really guard what docs/architecture.md says)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SOURCE = REPO / "src"


def _lint(src: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", command, "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                          cwd=src, env=env, capture_output=True, text=True, timeout=300, check=False)


def _lint_cli_available() -> bool:
    try:
        import importlinter.cli  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module", autouse=True)
def _needs_import_linter():
    if not _lint_cli_available():
        pytest.fail("import-linter is not installed (bash install.sh installs the dev extra)")


def test_contracts_hold():
    result = _lint(SOURCE)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "semlat layers KEPT" in result.stdout and "no import cycles KEPT" in result.stdout


def _copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(SOURCE / "semlat", src / "semlat", ignore=shutil.ignore_patterns("__pycache__", "configs"))
    return src


def test_an_import_cycle_breaks_the_contract(tmp_path):
    src = _copy(tmp_path)
    rates = src / "semlat" / "evaluation" / "error_rates.py"
    rates.write_text(rates.read_text() + "\n\ndef _cycle():\n    from semlat.evaluation import ctc_judge  # noqa\n")
    result = _lint(src)
    assert result.returncode != 0 and "no import cycles BROKEN" in result.stdout
    assert ".error_rates -> .ctc_judge" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    src = _copy(tmp_path)
    store = src / "semlat" / "data" / "store.py"
    store.write_text(store.read_text() + "\n\ndef _upward():\n    from semlat.training import trainer  # noqa\n")
    result = _lint(src)
    assert result.returncode != 0 and "semlat layers BROKEN" in result.stdout
    assert "semlat.data is not allowed to import semlat.training" in result.stdout


NAMED = re.compile(r'"(semlat(?:\.[a-z_0-9]+)+):[A-Za-z_][A-Za-z_0-9]*"')


def _graph(src: Path) -> dict[str, set[str]]:
    """Every semlat module's imports (import-linter's graph) plus every ``"semlat.module:attr"`` string in its
    source, counted as an import of that module."""
    import grimp

    sys.path.insert(0, str(src))
    try:
        graph = grimp.build_graph("semlat", exclude_type_checking_imports=True, cache_dir=None)
    finally:
        sys.path.remove(str(src))
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    for path in (src / "semlat").rglob("*.py"):
        module = ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        edges.setdefault(module, set()).update(NAMED.findall(path.read_text(encoding="utf-8")))
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_cycles_even_counting_module_names_in_strings(tmp_path):
    assert _cycles(_graph(SOURCE)) == []
    # a table of names in a low module that names a module importing it is a cycle
    src = _copy(tmp_path)
    store = src / "semlat" / "checkpoints.py"
    store.write_text(store.read_text() + '\nTABLE = {"tts": "semlat.generation.synthesis:load_tts"}\n')
    assert any("semlat.checkpoints" in c and "semlat.generation.synthesis" in c for c in _cycles(_graph(src)))


def test_every_module_imports_on_its_own():
    """Each semlat module imported first, in a process where no other semlat module is loaded yet (third-party
    modules stay cached, so this takes seconds): an import that only works after another one fails here."""
    script = """
import importlib, pkgutil, sys, traceback
import semlat
names = sorted(m.name for m in pkgutil.walk_packages(semlat.__path__, "semlat."))
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m == "semlat" or m.startswith("semlat.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as err:
        failed.append(f"{name}: {type(err).__name__}: {err}")
print(len(names))
print("\\n".join(failed))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(SOURCE)}, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    count, *failed = result.stdout.strip().splitlines()
    assert int(count) > 100 and not [f for f in failed if f], failed
