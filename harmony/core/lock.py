"""The run lock: a lock file that refuses a second live run in a directory and takes over one left by a dead process.

The lock is the kernel's (``flock`` on ``harmony.lock``), not the file's existence: the kernel releases it when
its process dies, however it dies, and only one process can hold it, so two newcomers finding a dead run's
lock file cannot both take it over. The file's content (pid, host, start time) is for the messages, and for
locks written by a process that holds no kernel lock (another host, an older harmony): a live pid there still
refuses.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from itertools import chain
from pathlib import Path

from harmony.core.errors import HarmonyError
from harmony.core.files import ensure_output_dir, remove_temp_files
from harmony.core.manifest import now_utc

__all__ = ["LOCK_NAME", "LockError", "RunLock"]

logger = logging.getLogger(__name__)


LOCK_NAME = "harmony.lock"
#: Lock files this process holds (their resolved paths): a run's own stage folders may be locked inside it.
_HELD: set[str] = set()
#: Attempts on a lock held for an instant (another process probing it, or releasing it).
_ATTEMPTS, _PAUSE_S = 4, 0.05


class LockError(HarmonyError):
    """Another live run holds the run directory: the message names its pid, host and start time."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _read(fd: int) -> dict:
    """The holder record of an open lock file ({} when empty or unreadable)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (ValueError, UnicodeDecodeError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def _flock(fd: int, mode: int, path: Path) -> bool:
    """Take the kernel lock without waiting (a few tries over a moment); False when another process holds it."""
    for attempt in range(_ATTEMPTS):
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt < _ATTEMPTS - 1:
                time.sleep(_PAUSE_S)
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise LockError(f"{path}: cannot lock it, the file system does not support locks "
                                f"({exc.strerror})") from None
            raise
    return False


class RunLock:
    """A lock on a run directory: refuses a second live run, takes over one left by a dead process.

    A context manager: entering checks the directory (:func:`harmony.core.files.ensure_output_dir`), creates
    it, takes the kernel lock on ``<directory>/harmony.lock`` and writes the owner's pid, host and start time
    into it; leaving removes it, and the folders entering created when nothing was written into them. While
    held, temporary files a killed run left in the directory are deleted.
    A directory is refused while another process holds it, a folder above it (a ``harmony run`` writing a
    stage command's folder) or a folder up to two levels below it. A lock file whose process is gone is
    taken over with a warning; one naming a live process on this host, or any process on another host (it
    cannot be checked), refuses.

    Parameters
    ----------
    directory : str or os.PathLike
        The run directory to hold.

    Attributes
    ----------
    path : pathlib.Path
        The lock file.
    owner : dict
        What this process writes into it: ``pid``, ``host``, ``started``.

    Raises
    ------
    LockError
        On entering, when another live run holds the directory (naming its pid, host and start time).
    PathError
        On entering, when the directory cannot be a folder (see :func:`~harmony.core.files.check_output_dir`).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as run_dir:
    ...     with RunLock(run_dir) as lock:
    ...         held = lock.path.is_file()
    ...         try:
    ...             RunLock(run_dir).__enter__()
    ...         except LockError:
    ...             refused = True
    ...     print(held, refused, lock.path.exists())
    True True False
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.path = Path(directory) / LOCK_NAME
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": now_utc()}
        self._fd: int | None = None
        self._created: list[Path] = []

    def _refusal(self, holder: dict, where: Path) -> LockError:
        place = "this directory" if where == self.path.parent else where
        if not holder.get("pid"):
            return LockError(f"{self.path.parent}: another harmony run is starting in {place}; try again")
        return LockError(f"{self.path.parent}: another harmony run (pid {holder.get('pid')} on {holder.get('host')}, "
                         f"started {holder.get('started')}) is using {place}; wait for it to finish, or delete "
                         f"{where / LOCK_NAME} if that run is gone")

    def __enter__(self) -> RunLock:
        self._created = [p for p in (self.path.parent, *self.path.parent.parents) if not os.path.exists(p)]
        directory = ensure_output_dir(self.path.parent)
        self._refuse_if_nested()
        for _ in range(_ATTEMPTS):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if not _flock(fd, fcntl.LOCK_EX, self.path):
                    raise self._refusal(_read(fd), directory)
                if not self._same_file(fd):  # its holder released (and deleted) it meanwhile: lock the new one
                    os.close(fd)
                    continue
                previous = _read(fd)
                if previous and self._live_elsewhere(previous):
                    raise self._refusal(previous, directory)
            except BaseException:
                os.close(fd)
                raise
            if previous:
                logger.warning("%s: taking over the lock of a run that is gone (pid %s, started %s)", directory,
                               previous.get("pid"), previous.get("started"))
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(self.owner).encode("utf-8"), 0)
            os.fsync(fd)
            self._fd = fd
            _HELD.add(str(self.path.resolve()))
            for tmp in remove_temp_files(directory):
                logger.info("removed %s, left by a killed run", tmp)
            return self
        raise LockError(f"{directory}: cannot take the lock {self.path}; other runs keep starting there")

    def _same_file(self, fd: int) -> bool:
        try:
            now, held = os.stat(self.path), os.fstat(fd)
        except FileNotFoundError:
            return False
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def _live_elsewhere(self, holder: dict) -> bool:
        """A lock record that refuses although nobody holds the kernel lock: another host, or a live pid."""
        if holder.get("host") != self.owner["host"]:
            return True
        pid = holder.get("pid")
        return isinstance(pid, int) and pid != self.owner["pid"] and _pid_alive(pid)

    def _refuse_if_nested(self) -> None:
        """Refuse when another process holds a folder above this one or up to two levels below it."""
        folder = self.path.parent.resolve()
        above = (p / LOCK_NAME for p in folder.parents)
        below = chain(folder.glob(f"*/{LOCK_NAME}"), folder.glob(f"*/*/{LOCK_NAME}"))
        for lock_file in chain(above, below):
            if str(lock_file) in _HELD or not lock_file.is_file():
                continue
            try:
                fd = os.open(lock_file, os.O_RDONLY)
            except OSError:
                continue
            try:
                if not _flock(fd, fcntl.LOCK_SH, lock_file):
                    raise self._refusal(_read(fd), lock_file.parent)
            finally:
                os.close(fd)

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        _HELD.discard(str(self.path.resolve()))
        if self._same_file(self._fd):
            self.path.unlink(missing_ok=True)  # while still holding it: a newcomer then locks a new file
        os.close(self._fd)
        self._fd = None
        for folder in self._created:  # a run that wrote nothing (bad input) leaves no empty folders behind
            try:
                folder.rmdir()
            except OSError:
                break
