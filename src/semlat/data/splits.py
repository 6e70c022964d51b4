"""Deterministic train/valid/test assignment by hashing a key.

The split of an item depends only on its key (a path or a speaker id), the fractions and a salt,
never on what else is in the corpus, so adding files never moves existing ones between splits.
"""

from __future__ import annotations

import hashlib


def unit_hash(key: str, salt: str = "semlat") -> float:
    """A number in [0, 1) that is a fixed, well-mixed function of ``key`` and ``salt``."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(key: str, valid_fraction: float, test_fraction: float, salt: str = "semlat") -> str:
    """"test" for a ``test_fraction`` of keys, "valid" for a ``valid_fraction``, else "train"."""
    if valid_fraction < 0 or test_fraction < 0 or valid_fraction + test_fraction > 1:
        raise ValueError(f"bad split fractions valid={valid_fraction} test={test_fraction}")
    u = unit_hash(key, salt)
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"
