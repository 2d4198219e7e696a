"""The run lock: a lock file that refuses a second live run in a directory and takes over one left by a dead process."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

from harmony.core.errors import HarmonyError
from harmony.core.manifest import now_utc

__all__ = ["LOCK_NAME", "LockError", "RunLock"]

logger = logging.getLogger(__name__)


LOCK_NAME = "harmony.lock"


class LockError(HarmonyError):
    """Another live run holds the run directory: the message names its pid, host and start time."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class RunLock:
    """A lock file in the run directory: refuses a second live run, takes over one left by a dead process.

    A context manager: entering creates ``<directory>/harmony.lock`` atomically (the directory too),
    leaving removes it. The file holds the owner's pid, host and start time. A lock whose pid no longer
    runs on this host is stale (its run was killed) and is taken over with a warning; a lock from another
    host cannot be checked and refuses.

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
        On entering, when another live run holds the directory.

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

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            if self._create():
                return self
            holder = self._holder()
            if holder is None:  # released meanwhile
                continue
            if holder.get("host") != self.owner["host"] or _pid_alive(int(holder.get("pid", -1))):
                raise LockError(f"{self.path.parent}: another harmony run (pid {holder.get('pid')} on "
                                f"{holder.get('host')}, started {holder.get('started')}) is using this directory; "
                                f"wait for it to finish, or delete {self.path} if that run is gone")
            logger.warning("taking over the lock of a run that is gone: %s", holder)
            self.path.unlink(missing_ok=True)
        raise LockError(f"{self.path.parent}: cannot take the lock {self.path}; another run is starting")

    def _create(self) -> bool:
        """Write the lock beside it, then link it into place: the link fails if a lock exists (atomic)."""
        tmp = self.path.with_name(f".{LOCK_NAME}.{os.getpid()}")
        tmp.write_text(json.dumps(self.owner), encoding="utf-8")
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None  # released meanwhile: retry
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"pid": -1, "host": self.owner["host"]}  # unreadable: not a live run's lock

    def __exit__(self, *exc: object) -> None:
        holder = self._holder()
        if holder is not None and holder.get("pid") == self.owner["pid"]:
            self.path.unlink(missing_ok=True)
