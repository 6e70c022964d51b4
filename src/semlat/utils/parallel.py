"""Order-preserving parallel map with a progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Worker count when the caller gives none: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
    desc: str = "",
    unit: str = "it",
    threads: bool = False,
    progress: bool = True,
    chunksize: int = 8,
) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in input order, on ``workers`` processes (or threads).

    ``workers=1`` runs in this process (no pickling), which is also what tests use. ``fn`` must be a
    module-level function when processes are used.
    """
    items = list(items)
    workers = workers or default_workers()
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1 or len(items) <= 1:
            for item in items:
                yield fn(item)
                bar.update()
            return
        pool_cls = ThreadPoolExecutor if threads else ProcessPoolExecutor
        with pool_cls(max_workers=workers) as pool:
            kwargs = {} if threads else {"chunksize": chunksize}
            for result in pool.map(fn, items, **kwargs):
                yield result
                bar.update()
    finally:
        bar.close()
