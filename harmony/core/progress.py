"""Progress of long work: a bar on a terminal, lines in a log, nothing with ``progress=False``."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["LOG_EVERY_SECONDS", "PROGRESS_LOGGER", "log_stage", "progress_bar"]

#: The logger of progress lines (the CLI shows it at INFO when stderr is not a terminal, unless ``--quiet``).
PROGRESS_LOGGER = "harmony.progress"
#: Seconds between two progress lines of one long stage in a log.
LOG_EVERY_SECONDS = 30.0

logger = logging.getLogger(PROGRESS_LOGGER)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class _LogProgress:
    """What a disabled tqdm bar offers (iterate, ``update``, context manager), writing progress lines instead:
    one when the stage starts, one every ``every`` seconds with counts, rate and ETA, one when it ends."""

    disable = True

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "work",
                 unit: str = "it", initial: int = 0, every: float = LOG_EVERY_SECONDS, **_: Any) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc or "work", unit
        self.n = self.initial = initial
        self.every, self.closed = every, False
        self.start = self.last = time.monotonic()
        logger.info("%s: started, %s", self.desc, self._counts())

    def _counts(self) -> str:
        of = f" of {self.total}" if self.total is not None else ""
        return f"{self.n}{of} {self.unit}{'' if self.n == 1 and not of else 's'}"

    def update(self, n: int = 1) -> None:
        """Advance by ``n``; write a progress line when ``every`` seconds passed since the last one."""
        self.n += n
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        done, elapsed = self.n - self.initial, now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = ""
        if self.total and rate > 0:
            eta = f", ETA {_duration((self.total - self.n) / rate)}"
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        logger.info("%s: %s%s, %.3g %s/s%s", self.desc, self._counts(), share, rate, self.unit, eta)

    def __iter__(self) -> Iterator:
        for item in self.iterable if self.iterable is not None else ():
            yield item
            self.update()
        self.close()

    def close(self) -> None:
        """Write the closing line (once)."""
        if not self.closed:
            self.closed = True
            logger.info("%s: %s done in %s", self.desc, self._counts(), _duration(time.monotonic() - self.start))

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Ignored: a log line carries the counts only."""

    def __enter__(self) -> _LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(iterable: Iterable | None = None, *, progress: bool | None = None, **kwargs: Any):
    """A tqdm progress bar (tasks done/total, rate, ETA) on stderr, or progress lines in a log.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over; without it, advance the bar with its ``update()`` (use it as a context manager).
    progress : bool, optional
        ``None`` (default): a bar when both stdout and stderr are terminals, otherwise progress lines on the
        :data:`PROGRESS_LOGGER` logger (at INFO: a line when the stage starts, one every
        :data:`LOG_EVERY_SECONDS` with counts and ETA, one when it ends), so a run written to a file or a CI
        log says what it does; ``True`` always a bar; ``False`` nothing.
    **kwargs
        Passed to ``tqdm`` (``total``, ``desc``, ``unit``, ``initial``, ...).

    Returns
    -------
    tqdm.tqdm or a logging stand-in with the same ``update``/iteration/context-manager use
        Iterating over it yields the items of ``iterable``.

    Examples
    --------
    >>> list(progress_bar([1, 2], progress=False, desc="demo"))
    [1, 2]
    >>> with progress_bar(total=3, progress=False) as bar:
    ...     for _ in range(3):
    ...         _ = bar.update()
    >>> bar.total
    3
    """
    from tqdm.auto import tqdm

    if progress is None and not (sys.stdout.isatty() and sys.stderr.isatty()):
        return _LogProgress(iterable, **kwargs)
    return tqdm(iterable, disable=not progress and progress is not None, **kwargs)


def log_stage(text: str, *args: Any) -> None:
    """Log one line of a stage's start or end on the :data:`PROGRESS_LOGGER` logger.

    The CLI shows these lines in a log, not on a terminal, where the bars say it.

    Parameters
    ----------
    text : str
        A ``logging`` format string (``"stage %s: done in %.1f s"``).
    *args
        Its arguments.

    Examples
    --------
    >>> log_stage("stage %s: started", "reliability")
    """
    logger.info(text, *args)
