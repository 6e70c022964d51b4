"""Batch lists of generation jobs: JSONL (one object per line) or TSV with a header, read into row dicts."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from semlat.errors import DataError


def read_rows(path: str | os.PathLike, what: str = "list") -> list[dict[str, Any]]:
    """The rows of a ``.jsonl`` file (blank lines skipped; a line that is not a JSON object is an empty row) or
    of a tab-separated file with a header. A missing file or invalid JSON is a one-line DataError naming the
    file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what} file")
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".jsonl":
        return list(csv.DictReader(text.splitlines(), delimiter="\t"))
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: invalid JSON ({err.msg})") from None
        rows.append(row if isinstance(row, dict) else {})
    return rows
