"""A shared pool of worker threads for numeric kernels that release the GIL.

Plain threads rather than an OpenMP team: idle workers sleep on a queue instead of
spinning, so they never starve the single-threaded numpy work between kernels.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["in_background", "thread_map", "usable_cores"]

T = TypeVar("T")

_LOCK = threading.Lock()
_POOL: dict[int, ThreadPoolExecutor] = {}  # by process id: a forked child needs its own


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_WORKER = threading.local()


def _mark_worker() -> None:
    _WORKER.active = True


def _pool() -> ThreadPoolExecutor:
    pid = os.getpid()
    with _LOCK:
        if pid not in _POOL:
            _POOL.clear()
            _POOL[pid] = ThreadPoolExecutor(
                max_workers=usable_cores(),
                thread_name_prefix="segmentkit",
                initializer=_mark_worker,
            )
        return _POOL[pid]


def thread_map(function: Callable[..., T], *iterables: Iterable[Any]) -> list[T]:
    """``[function(*args) for args in zip(*iterables)]``, run on the shared pool.

    A single call runs inline, and so does a call from a pool worker (waiting on the
    pool from inside it could deadlock). Exceptions propagate from the first failing
    call.

    Examples
    --------
    >>> thread_map(pow, [2, 3], [3, 2])
    [8, 9]
    """
    calls = list(zip(*iterables, strict=True))
    if len(calls) <= 1 or usable_cores() == 1 or getattr(_WORKER, "active", False):
        return [function(*args) for args in calls]
    futures = [_pool().submit(function, *args) for args in calls]
    return [future.result() for future in futures]


def in_background(function: Callable[..., T], *args: Any) -> Future[T]:
    """Start ``function(*args)`` on the shared pool and return its future.

    For single-threaded work (one OpenMP/BLAS thread) that the caller overlaps with
    its own: it holds one worker, so calls of :func:`thread_map` meanwhile queue on
    the other worker(s) and the pool never runs more jobs than there are cores (the
    caller's own thread comes on top). With one core, or from a pool worker, the call
    runs inline and the future is already done. Exceptions are raised by
    ``future.result()``.

    Examples
    --------
    >>> in_background(pow, 2, 10).result()
    1024
    """
    if usable_cores() == 1 or getattr(_WORKER, "active", False):
        done: Future[T] = Future()
        try:
            done.set_result(function(*args))
        except Exception as error:  # raised by result(), as from a worker
            done.set_exception(error)
        return done
    return _pool().submit(function, *args)
