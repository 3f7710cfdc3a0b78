"""Pausing Python's cyclic garbage collector while a large, acyclic batch of objects is built.

Importing a 20,000-finding report allocates a few hundred thousand container objects (the JSON tree,
two value objects per finding, the rows handed to the driver) that all stay alive until the report is
stored. Each allocation burst past the generation-0 threshold runs a collection, and every tenth of
those a generation-1 one; objects that survive get examined again and again, and when the surviving
count grows large a full collection walks the whole heap too. None of it frees anything: the batch is
reachable until the call returns, then freed by reference counting (it holds no cycles). Measured in
`gate serve` on the bench store, this was about a third of the import's parse-and-convert time.

`gc_paused` turns automatic collection off for the duration of such a block. The block should also
drop the batch before it ends: objects allocated during the pause count towards the next collection
until they are freed, so a batch still alive when collection resumes is walked once more right away.

Collection is global to the process, so concurrent blocks share one pause: it ends when the last of
them ends, and only re-enables collection if it was enabled when the first began (a process that runs
with gc disabled stays so). Cycles created meanwhile, by this thread or another, are collected at the
next automatic collection after the pause, so the pause delays garbage collection but never loses any.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]

_lock = threading.Lock()
_depth = 0  # blocks currently inside gc_paused, across all threads
_resume = False  # whether the outermost block found collection enabled


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with automatic garbage collection off (see the module docstring for why)."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
