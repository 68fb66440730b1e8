"""Graceful stops: SIGINT/SIGTERM become a flag the training loop checks between steps."""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["StopFlag", "catch_stop_signals"]

log = logging.getLogger("lossensemble.training")


class StopFlag:
    """Set by :func:`catch_stop_signals` when SIGINT or SIGTERM arrives (``signum`` is the signal)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def set(self, signum: int = signal.SIGTERM) -> None:
        if self.signum is None:
            self.signum = signum


@contextmanager
def catch_stop_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Within the block, the first SIGINT/SIGTERM sets ``flag``; a second one stops at once.

    Only the main thread can install handlers; elsewhere the block runs unchanged.
    The previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag:  # second signal: stop now
            raise KeyboardInterrupt
        flag.set(signum)
        log.warning("received %s: finishing the current step, then saving a checkpoint", signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
