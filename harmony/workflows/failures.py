"""The console summary of failed tasks: the first few (case, variant, reason) and the count per reason."""

from __future__ import annotations

import re

import pandas as pd

from harmony.core import schema

__all__ = ["failure_reason", "failure_summary"]

#: A leading ``case '...': `` of a message: the case is shown in its own column.
_CASE_PREFIX = re.compile(r"^case (?:'[^']*'|\"[^\"]*\"): ")


def failure_reason(error: str) -> str:
    """The kind of a task's failure: its error type and the message's first clause, without case or values.

    The reason is ``<ErrorType>: <message up to the first ':' or ' ('>`` with a leading ``case '...': ``
    removed, so failures of one kind on different cases (files, counts) share a reason.

    Parameters
    ----------
    error : str
        A failures table's ``error`` text (``"CaseError: case 'p1': image file is unreadable: /x.nrrd (...)"``).

    Returns
    -------
    str
        The reason, at most 100 characters.

    Examples
    --------
    >>> failure_reason("CaseError: case 'p1': image file is unreadable: /data/p1.nrrd (truncated)")
    'CaseError: image file is unreadable'
    >>> failure_reason("ValueError: mask has too few dimensions")
    'ValueError: mask has too few dimensions'
    """
    kind, _, message = str(error).partition(": ")
    if not message:
        return kind[:100]
    message = _CASE_PREFIX.sub("", message)
    clause = re.split(r": | \(", message, maxsplit=1)[0].strip()
    return f"{kind}: {clause}"[:100]


def failure_summary(failures: pd.DataFrame, first: int = 3) -> str:
    """Lines for the console: how many tasks failed, the count per reason and the first ``first`` failures.

    Parameters
    ----------
    failures : DataFrame
        A failures table (:data:`~harmony.core.schema.FAILURES`).
    first : int, default 3
        How many failures to name.

    Returns
    -------
    str
        Empty when nothing failed.

    Examples
    --------
    >>> reason = "image has NaN or infinite voxels inside the mask"
    >>> failures = pd.DataFrame({"case_id": ["p1", "p2"], "variant_id": ["original", "original"], "repeat": [0, 0],
    ...                          "error": [f"CaseError: case 'p1': {reason}: 3 of 9",
    ...                                    f"CaseError: case 'p2': {reason}: 1 of 9"]})
    >>> print(failure_summary(failures, first=1))
    2 task(s) failed, per reason:
      2 x CaseError: image has NaN or infinite voxels inside the mask
    the first 1:
      case 'p1', variant 'original': CaseError: case 'p1': image has NaN or infinite voxels inside the mask: 3 of 9
    """
    if failures is None or failures.empty:
        return ""
    reasons = failures[schema.ERROR].map(failure_reason).value_counts()
    lines = [f"{len(failures)} task(s) failed, per reason:"]
    lines += [f"  {count} x {reason}" for reason, count in reasons.items()]
    lines.append(f"the first {min(first, len(failures))}:")
    lines += [f"  case {row[schema.CASE_ID]!r}, variant {row[schema.VARIANT_ID]!r}: {str(row[schema.ERROR])[:300]}"
              for row in failures.head(first).to_dict("records")]
    return "\n".join(lines)
