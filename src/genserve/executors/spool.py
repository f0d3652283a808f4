"""The checkpoint folder of a LocalExecutor (`genserve-ckpt-<pid>-<random>` on /dev/shm), and the sweep of folders
left behind by owners that died without closing (SIGKILL, OOM kill).

An owner holds an exclusive flock on `owner.lock` inside its folder for its whole life (the kernel drops it when
the process dies, whatever killed it). A folder is stale only when both say so: the lock can be taken and the
pid in its name is not running. So a live server's folder is never swept, even one in another pid namespace
sharing /dev/shm (its lock is held) or one whose lock file is not written yet (its pid runs). Folders without a
pid in their name (made by older versions) are left alone: nothing tells whether their owner lives.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("genserve.executors")

PREFIX = "genserve-ckpt-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-\w+")
LOCK = "owner.lock"


def default_root() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _lock_free(folder: Path) -> bool:
    try:
        fd = os.open(folder / LOCK, os.O_RDWR)
    except FileNotFoundError:
        return True  # never locked (its owner died before writing it) or being created: the pid decides
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def sweep(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove the checkpoint folders under `root` whose owner process is gone; returns them."""
    base = Path(root if root is not None else (default_root() or tempfile.gettempdir()))
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for d in entries:
        m = _NAME.fullmatch(d.name)
        if m is None or not d.is_dir() or int(m.group(1)) == os.getpid():
            continue
        if not _running(int(m.group(1))) and _lock_free(d):
            shutil.rmtree(d, ignore_errors=True)
            if not d.exists():
                removed.append(d)
    if removed:
        log.info("removed %d checkpoint folders of processes that are gone: %s", len(removed),
                 ", ".join(p.name for p in removed))
    return removed


def make(root: str | os.PathLike | None = None) -> tuple[Path, int]:
    """Sweep stale folders, then make this process's folder and lock it: (folder, lock fd to keep open)."""
    root = root if root is not None else default_root()
    sweep(root)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root))
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return folder, fd


def remove(folder: Path, fd: int | None) -> None:
    """The owner's clean exit: the folder goes, then the lock."""
    shutil.rmtree(folder, ignore_errors=True)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
