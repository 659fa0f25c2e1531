"""One thread for a worker's timers.

A ``threading.Timer`` is a thread: one per job (its ``started`` report) and
one per recorded delivery (its crash window) cost the worker a thread start
per command, most of them cancelled unused — a third of the SDK's time per
command at a thousand commands a second. A Scheduler runs every callback of
one worker on one thread, in deadline order.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Callable, List, Optional, Tuple

log = logging.getLogger("pulsaga.worker")


class Timer:
    """A scheduled callback; cancel() keeps it from running."""

    __slots__ = ("fn", "cancelled")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """Runs callbacks after a delay on one daemon thread, started on first
    use; close() ends it (callbacks not yet due are dropped). A callback
    that raises is logged; one that blocks delays the others."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._cv = threading.Condition()
        self._heap: List[Tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    def after(self, delay: float, fn: Callable[[], None]) -> Timer:
        t = Timer(fn)
        with self._cv:
            if self._closed:
                t.cancelled = True
                return t
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), t))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is t:
                self._cv.notify()  # (earlier than what the thread waits for)
        return t

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._heap.clear()
            self._cv.notify()
            th = self._thread
        if th is not None and th is not threading.current_thread():
            th.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cv:
                while True:
                    if self._closed:
                        return
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            _, _, t = heapq.heappop(self._heap)
                            break
                        self._cv.wait(wait)
                    else:
                        self._cv.wait()
            if t.cancelled:
                continue
            try:
                t.fn()
            except Exception:  # noqa: BLE001 - one callback must not end the others
                log.exception("%s: a timer's callback failed", self._name)
