"""The progress bar every long stage shows: on a terminal by default, never with ``progress=False``."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(iterable: Iterable | None = None, *, progress: bool | None = None, **kwargs: Any):
    """A tqdm progress bar (tasks done/total, rate, ETA) on stderr.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over; without it, advance the bar with its ``update()`` (use it as a context manager).
    progress : bool, optional
        ``None`` (default) shows the bar only when both stdout and stderr are terminals, so a run piped to a
        file or a CI log stays quiet; ``True`` always shows it, ``False`` never.
    **kwargs
        Passed to ``tqdm`` (``total``, ``desc``, ``unit``, ...).

    Returns
    -------
    tqdm.tqdm
        The bar; iterating over it yields the items of ``iterable``.

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

    show = progress if progress is not None else (sys.stdout.isatty() and sys.stderr.isatty())
    return tqdm(iterable, disable=not show, **kwargs)
