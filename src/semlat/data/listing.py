"""Batch lists of generation jobs: JSONL (one object per line) or TSV with a header, read into row dicts."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from semlat.errors import DataError


def read_rows(path: str | os.PathLike, what: str = "list", paths: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The rows of a ``.jsonl`` file (blank lines skipped; a line that is not a JSON object is an empty row) or
    of a tab-separated file with a header; the non-empty values of the ``paths`` columns, when relative, are made
    relative to the list's folder. A missing file or invalid JSON is a one-line DataError naming the file (and
    line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what} file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = [_json_row(line, f"{path}:{number}") for number, line in enumerate(text.splitlines(), start=1)
                if line.strip()]
    else:
        rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    for row in rows:
        for key in paths:
            if row.get(key) and not Path(row[key]).is_absolute():
                row[key] = str(path.parent / row[key])
    return rows


def _json_row(line: str, where: str) -> dict[str, Any]:
    """One JSONL line as a row (a value that is not an object is an empty row)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: invalid JSON ({err.msg})") from None
    return row if isinstance(row, dict) else {}
