"""Alignment files: which unit is spoken when, per utterance.

JSON Lines, one object per utterance: ``{"id": <the manifest's audio path>, "segments": [[label, start_s,
end_s], ...]}`` with ``0 <= start < end``; ``semlat judge align`` (the CTC judge's forced alignments) writes
them, the phoneme probe of ``eval latents`` and the duration-aligned TTS (``tts`` recipe,
``data.alignments``) read them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from semlat.errors import DataError

Segment = tuple[str, float, float]


def read_alignments(path: str | os.PathLike) -> dict[str, list[tuple[str, float, float]]]:
    """Read an alignments JSONL file into ``{id: [(label, start_s, end_s), ...]}``.

    Raises :class:`DataError` with ``file:line`` for a malformed line (not JSON, no ``id`` string,
    ``segments`` not a list of ``[label, start, end]`` with ``0 <= start < end``) or a duplicate id.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read alignments ({err.__class__.__name__})") from None
    out: dict[str, list[tuple[str, float, float]]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{where}: not valid JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not row["id"]:
            raise DataError(f"{where}: each line must be an object with an 'id' string")
        segments = row.get("segments")
        if not isinstance(segments, list):
            raise DataError(f"{where}: 'segments' must be a list of [label, start_s, end_s]")
        parsed = []
        for seg in segments:
            ok = (isinstance(seg, list) and len(seg) == 3 and isinstance(seg[0], str)
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seg[1:]))
            if not ok or not (math.isfinite(seg[1]) and math.isfinite(seg[2]) and 0 <= seg[1] < seg[2]):
                raise DataError(f"{where}: bad segment {json.dumps(seg)[:60]} (want [label, start_s, end_s], "
                                "0 <= start < end)")
            parsed.append((seg[0], float(seg[1]), float(seg[2])))
        if row["id"] in out:
            raise DataError(f"{where}: duplicate id {row['id']!r}")
        out[row["id"]] = parsed
    if not out:
        raise DataError(f"{path}: no alignments")
    return out
