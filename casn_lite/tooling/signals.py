"""Stopping a run cleanly: SIGTERM (``kill``, a batch system, a closing terminal) is handled
as Ctrl-C is, so that ``finally`` blocks run (temporary files removed, a notebook marked
interrupted, workers and kernels stopped) instead of the process dying mid-write.

``stop_on_signals()`` installs, in the main thread, handlers that raise ``KeyboardInterrupt``
for SIGINT and ``Terminated`` (a ``KeyboardInterrupt``) for SIGTERM, and remembers the signal
(``stop_requested()``), so that code that swallowed the exception (a library's cleanup) can
still tell that the run must stop. Our own handlers also keep asyncio (under papermill) from
turning Ctrl-C into a task cancellation that a library may absorb.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Terminated", "stop_on_signals", "stop_requested", "exit_status", "how_stopped", "install",
           "stop_exception"]


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as after Ctrl-C."""


_received: list[int] = []  # the signals that asked this process to stop


_busy = [lambda: True]  # whether there is work to interrupt (a worker between notebooks has none)


def _handler(signum, frame):
    _received.append(signum)
    if len(_received) == 2 or not _busy[0]():  # a second signal (the terminal's Ctrl-C and the
        return  # runner's SIGTERM, say) must not break the cleanup the first started; a third stops it
    if signum == signal.SIGTERM:
        raise Terminated("stopped by SIGTERM")
    raise KeyboardInterrupt("stopped by Ctrl-C")


def install(busy: Callable[[], bool] | None = None) -> None:
    """For good (a worker process): SIGINT raises KeyboardInterrupt, SIGTERM Terminated, while
    ``busy()`` says there is work to interrupt (else the signal is only recorded:
    ``stop_requested()``)."""
    _busy[0] = busy or (lambda: True)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _handler)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT raises KeyboardInterrupt and SIGTERM raises Terminated (main
    thread only; elsewhere nothing changes). The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _received.clear()
    for s in previous:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def stop_requested() -> bool:
    """Whether SIGINT or SIGTERM arrived since the handlers were installed."""
    return bool(_received)


def stop_exception() -> KeyboardInterrupt:
    """The exception the first signal received would have raised (to raise it late, when a
    library swallowed the first)."""
    if _received and _received[0] == signal.SIGTERM:
        return Terminated("stopped by SIGTERM")
    return KeyboardInterrupt("stopped by Ctrl-C")


def how_stopped(err: BaseException | None = None) -> str:
    """"stopped by SIGTERM" or "stopped by Ctrl-C"."""
    if isinstance(err, Terminated) or (err is None and signal.SIGTERM in _received):
        return "stopped by SIGTERM"
    return "stopped by Ctrl-C"


def exit_status(err: BaseException) -> int:
    """The shell's convention: 128 + the signal's number (130 after Ctrl-C, 143 after SIGTERM)."""
    return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)
