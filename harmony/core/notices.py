"""Warnings in the user's words: harmony's warning category, and a collector that reports each one once.

Library code warns with :func:`warn` (a :class:`HarmonyWarning` naming the feature, site or case and saying
why in plain words). A command runs inside :func:`collect_warnings`, which catches every such warning, and
the numerical or library warnings (``RuntimeWarning``, ``UserWarning``) raised beneath harmony's code,
counts repeats, and hands back one :class:`Notice` per distinct warning for the terminal and the report.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["HarmonyWarning", "Notice", "WarningLog", "collect_warnings", "warn"]


class HarmonyWarning(UserWarning):
    """A warning about the user's data or settings, in plain words, naming what it is about.

    Parameters
    ----------
    why : str
        What is wrong and what it means, as a sentence for the user.
    feature, site, case : str, optional
        What the warning is about (any that apply).

    Examples
    --------
    >>> str(HarmonyWarning("only 2 cases; ICC intervals are wide", feature="original_firstorder_Mean"))
    "feature 'original_firstorder_Mean': only 2 cases; ICC intervals are wide"
    """

    def __init__(self, why: str, *, feature: str | None = None, site: str | None = None,
                 case: str | None = None) -> None:
        super().__init__(why)
        self.why, self.feature, self.site, self.case = str(why), feature, site, case

    def __str__(self) -> str:
        return _text(self.why, self.feature, self.site, self.case)


def _text(why: str, feature: str | None, site: str | None, case: str | None) -> str:
    about = [f"{name} {value!r}" for name, value in (("feature", feature), ("site", site), ("case", case))
             if value is not None]
    return f"{', '.join(about)}: {why}" if about else why


def warn(why: str, *, feature: str | None = None, site: str | None = None, case: str | None = None,
         stacklevel: int = 2) -> None:
    """Issue a :class:`HarmonyWarning` (``warnings.warn`` with the fields set).

    Parameters
    ----------
    why : str
        The sentence for the user.
    feature, site, case : str, optional
        What it is about.
    stacklevel : int, default 2
        As for :func:`warnings.warn` (2: the caller of the function that calls ``warn``'s caller is not
        named; the line calling ``warn`` is).

    Examples
    --------
    >>> with collect_warnings() as log:
    ...     warn("too few cases", site="A")
    >>> log.lines()
    ["site 'A': too few cases"]
    """
    warnings.warn(HarmonyWarning(why, feature=feature, site=site, case=case), stacklevel=stacklevel + 1)


@dataclass(frozen=True)
class Notice:
    """One distinct warning: what it says, what it is about, how often it was raised.

    Parameters
    ----------
    why : str
        The sentence.
    feature, site, case : str or None
        What it is about.
    kind : str
        ``"harmony"`` for a :class:`HarmonyWarning`, else where a numerical or library warning came from.
    count : int
        How many times it was raised.
    """

    why: str
    feature: str | None = None
    site: str | None = None
    case: str | None = None
    kind: str = "harmony"
    count: int = 1

    @property
    def text(self) -> str:
        """The one line shown to the user."""
        times = f" ({self.count} times)" if self.count > 1 else ""
        return _text(self.why, self.feature, self.site, self.case) + times


#: Plain words for the warning categories of the libraries beneath harmony.
_PLAIN = {"RuntimeWarning": "library warning", "UserWarning": "library note",
          "ConvergenceWarning": "a fit did not converge", "FutureWarning": "library note"}
#: Texts of numpy's floating-point warnings (``overflow encountered in multiply``, ``Mean of empty slice``).
_NUMERICAL = ("encountered in", "empty slice", "Degrees of freedom <= 0", "divide by zero")


def _where(filename: str) -> str:
    """``harmony.reliability.arrays`` for a harmony file, else the library's top-level folder name."""
    parts = Path(filename).with_suffix("").parts
    if "harmony" in parts:
        return ".".join(parts[len(parts) - 1 - parts[::-1].index("harmony"):])
    site = [p for p in parts if p in ("site-packages", "dist-packages")]
    if site:
        after = parts[parts.index(site[-1]) + 1:]
        return after[0] if after else Path(filename).name
    return Path(filename).stem


class WarningLog:
    """The distinct warnings caught by :func:`collect_warnings`, in the order first seen.

    Examples
    --------
    >>> log = WarningLog()
    >>> for _ in range(3):
    ...     log.add(HarmonyWarning("clipped to the training range", feature="f"))
    >>> [n.text for n in log.notices]
    ["feature 'f': clipped to the training range (3 times)"]
    """

    def __init__(self) -> None:
        self._notices: dict[tuple, Notice] = {}

    def add(self, message: Warning | str, category: type[Warning] = UserWarning, filename: str = "") -> None:
        """Record one warning (a repeat of one already seen only raises its count).

        Parameters
        ----------
        message : Warning or str
            The warning instance (or text) as ``warnings.showwarning`` receives it.
        category : type, default UserWarning
            Its category.
        filename : str, default ""
            The file that raised it (for a warning that is not a :class:`HarmonyWarning`).
        """
        if isinstance(message, HarmonyWarning):
            notice = Notice(message.why, message.feature, message.site, message.case)
        else:
            name, text = category.__name__, str(message)
            where = _where(filename) if filename else "harmony"
            if any(mark in text for mark in _NUMERICAL):
                why = f"numerical problem in {where}: {text} (the values affected are NaN or infinite)"
            elif where.startswith("harmony"):
                why = text  # harmony's own words, raised with a standard category
            else:
                why = f"{_PLAIN.get(name, name)} from {where}: {text}"
            notice = Notice(why, kind=f"{name} ({where})")
        key = (notice.why, notice.feature, notice.site, notice.case, notice.kind)
        seen = self._notices.get(key)
        self._notices[key] = notice if seen is None else Notice(**{**asdict(seen), "count": seen.count + 1})

    @property
    def notices(self) -> list[Notice]:
        """The distinct warnings, first seen first."""
        return list(self._notices.values())

    def lines(self) -> list[str]:
        """One line per distinct warning.

        Returns
        -------
        list of str
            :attr:`Notice.text` of each notice, first seen first.
        """
        return [n.text for n in self._notices.values()]

    def records(self) -> list[dict[str, Any]]:
        """The notices as dicts, for a manifest.

        Returns
        -------
        list of dict
            ``why, feature, site, case, kind, count`` of each notice.
        """
        return [asdict(n) for n in self._notices.values()]

    def merge(self, other: WarningLog) -> None:
        """Add the notices of ``other`` (counts of the same notice add up).

        Parameters
        ----------
        other : WarningLog
            Another log.
        """
        for key, notice in other._notices.items():
            seen = self._notices.get(key)
            self._notices[key] = notice if seen is None else Notice(**{**asdict(seen),
                                                                      "count": seen.count + notice.count})

    def __len__(self) -> int:
        return len(self._notices)


#: The logs of the collectors now open, innermost last: a closing collector hands its notices outwards.
_OPEN: list[WarningLog] = []


@contextlib.contextmanager
def collect_warnings(log: WarningLog | None = None) -> Iterator[WarningLog]:
    """Catch harmony's warnings and the numerical and library warnings beneath them; show none.

    Every :class:`HarmonyWarning`, ``RuntimeWarning`` and ``UserWarning`` (and their subclasses, such as
    scikit-learn's ``ConvergenceWarning``) raised inside the block is recorded in the log instead of being
    printed; the log counts repeats. Other categories (``DeprecationWarning``) follow the filters in force.
    Collectors nest: when an inner one closes, its notices are added to the enclosing one's log too (a
    workflow keeps its stage's warnings for the report, the CLI still prints them all).

    Parameters
    ----------
    log : WarningLog, optional
        Add to this log (default: a new one).

    Yields
    ------
    WarningLog
        The log; read :meth:`WarningLog.lines` after the block.

    Examples
    --------
    >>> import numpy as np
    >>> with collect_warnings() as log:
    ...     for _ in range(6):
    ...         _ = np.log(np.zeros(1))
    >>> len(log), log.notices[0].count, log.notices[0].why.startswith("numerical problem in")
    (1, 6, True)
    """
    log = WarningLog() if log is None else log
    with warnings.catch_warnings():
        for category in (RuntimeWarning, UserWarning):
            warnings.simplefilter("always", category)

        def show(message, category, filename, lineno, file=None, line=None):
            log.add(message, category, filename)

        warnings.showwarning = show
        _OPEN.append(log)
        try:
            yield log
        finally:
            _OPEN.pop()
            if _OPEN and _OPEN[-1] is not log:
                _OPEN[-1].merge(log)
