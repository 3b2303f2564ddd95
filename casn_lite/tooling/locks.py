"""One run at a time writes into a folder: ``lock_folder(out, command)`` holds a lock file
there while ``reproduce`` or ``train`` writes; a second run is refused, naming the first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..saving import CannotWrite

__all__ = ["FolderBusy", "lock_folder", "LOCK_NAME"]

LOCK_NAME = ".casn-lite.lock"


class FolderBusy(ValueError):
    """Another run is writing into the folder."""


@contextmanager
def lock_folder(out: str | Path, command: str = "reproduce") -> Iterator[Path]:
    """Create ``out`` and hold a lock on it while ``command`` writes there; a second run into
    it, of either command, is refused (``FolderBusy``) naming the first."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CannotWrite(f"--out {out} is a file; choose a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / LOCK_NAME, "a+")  # noqa: SIM115  held until the run ends
    except OSError as err:
        raise CannotWrite(f"cannot write to --out {out}: {err.strerror or err}; choose another folder") from None
    with handle:
        if not _try_lock(handle):
            handle.seek(0)
            holder = handle.read().split() or ["casn-lite"]
            who = f"another {holder[0]} run" + (f" (process {holder[1]})" if len(holder) > 1 else "")
            raise FolderBusy(f"{who} is writing to {out}; wait for it to finish or choose another --out")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{command} {os.getpid()}\n")
        handle.flush()
        yield out


def _try_lock(handle) -> bool:
    """An exclusive lock on an open file without waiting; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no protection against a second run
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
