"""Writing files safely: whole or not at all, and no leftovers when a write is stopped.

* ``temporary(path)``: a temporary name beside ``path`` that carries this process's id
  (``.NAME.PID.TOKEN.tmp``) and is removed on the way out, whatever stops the write (an
  error, a full disk, Ctrl-C, SIGTERM); the caller moves it into place with ``os.replace``.
* ``write_text`` and ``save_torch``: a file written that way; a full disk is one error
  (``CannotWrite``) naming the file and the free space, not torch's ``unexpected pos``.
* ``sweep_stale(folder)``: removes the temporary files of processes that no longer run
  (killed with SIGKILL, or a power cut), which would otherwise keep a full disk full.

The engine's checkpoints and the cache of IDE starts are written this way, so a run killed
mid-save leaves the previous file, never half of one. (Holding a folder for one run at a
time is the tooling's: ``casn_lite.tooling.locks.lock_folder``.)
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["CannotWrite", "temporary", "write_text", "save_torch", "sweep_stale", "append_record"]

_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[0-9a-f]+\.tmp(\.\w+)?$")


class CannotWrite(ValueError):
    """A file or folder cannot be written: the disk is full, or the folder is not writable."""


@contextmanager
def temporary(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` (same file system: ``os.replace`` is a rename), ending
    in ``suffix`` (e.g. ``.ipynb``, for tools that look at it); it is removed on the way out
    if still there. A full disk becomes ``CannotWrite``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
    except (OSError, RuntimeError) as err:
        if _disk_full(err):
            raise CannotWrite(f"cannot write {path}: no space left on the device "
                              f"({_free(path.parent)} free there); free some space or write elsewhere") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _disk_full(err: BaseException) -> bool:
    """Whether an error is a full disk: ENOSPC or EDQUOT, or torch's writer failing mid-file."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return "No space left on device" in text or ("inline_container" in text and "unexpected pos" in text)


def _free(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.0f} MB"
    except OSError:
        return "unknown"


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file under a temporary name, then move it into place."""
    path = Path(path)
    with temporary(path) as tmp:
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def save_torch(obj, path: str | Path) -> Path:
    """``torch.save`` under a temporary name, then moved into place."""
    import torch

    path = Path(path)
    with temporary(path) as tmp:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_stale(folder: str | Path) -> list[Path]:
    """Remove the temporary files in ``folder`` left by processes that no longer run; returns them."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        found = _TEMPORARY.match(entry.name)
        if found and int(found.group(1)) != os.getpid() and not _alive(int(found.group(1))):
            try:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            except OSError:
                continue
            removed.append(entry)
    return removed


def append_record(path: str | Path, record: dict) -> None:
    """Append ``record`` as one line of JSON to ``path`` (its folder made if missing), flushed
    to disk before returning: a resumable run writes one such line per finished piece of
    work, and a run started again skips what the file already holds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
