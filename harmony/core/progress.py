"""The progress bar every long stage shows: on a terminal by default, never with ``progress=False``."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def progress_bar(iterable: Iterable | None = None, *, progress: bool | None = None, **kwargs: Any):
    """A tqdm bar (tasks done/total, rate, ETA) on stderr.

    ``progress=None`` shows it only when both stdout and stderr are terminals, so a run piped to a file or
    a CI log stays quiet; ``True`` always shows it, ``False`` never.

    >>> list(progress_bar([1, 2], progress=False, desc="demo"))
    [1, 2]
    """
    from tqdm.auto import tqdm

    show = progress if progress is not None else (sys.stdout.isatty() and sys.stderr.isatty())
    return tqdm(iterable, disable=not show, **kwargs)
