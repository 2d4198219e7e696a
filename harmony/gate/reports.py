"""The gate's reports: a console table, Markdown and JUnit XML naming every changed feature."""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harmony.core import schema
from harmony.core.files import atomic_write, write_text
from harmony.gate.compare import (
    ABS_TOL,
    ADDED,
    CCC,
    DISCORDANT,
    FEATURE_CLASS,
    MAX_ABS,
    MAX_REL,
    MIN_CCC,
    MISSING,
    N_CHANGED,
    N_MISSING,
    N_VALUES,
    PASSED,
    REL_TOL,
    REMOVED,
    STATUS,
    GateResult,
)

__all__ = ["summary", "format_table", "markdown_report", "junit_xml", "write_check_report"]


def _num(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def _failure_message(row: Mapping[str, Any]) -> str:
    status = row[STATUS]
    if status in (ADDED, REMOVED):
        return f"feature {status}"
    if status == MISSING:
        return f"{row[N_MISSING]} of {row[N_VALUES]} values present on one side only"
    if status == DISCORDANT:
        return f"CCC {_num(row[CCC])} < {row[MIN_CCC]:g}"
    return (f"{row[N_CHANGED]} of {row[N_VALUES]} values changed: max abs diff {_num(row[MAX_ABS])}, "
            f"max rel diff {_num(row[MAX_REL])} (tolerance rel {row[REL_TOL]:g}, abs {row[ABS_TOL]:g}), "
            f"CCC {_num(row[CCC])}")


def _notice_lines(result: GateResult) -> list[str]:
    lines = [f"version {name}: {old} -> {new}" + (" (fails the gate)" if result.fail_on_version_change else "")
             for name, old, new in result.versions]
    lines += [f"setting {key}: {old!r} -> {new!r}" for key, old, new in result.settings]
    return lines + result.notices


def summary(result: GateResult) -> str:
    """One line: passed or failed, and how many features changed of how many compared.

    Parameters
    ----------
    result : GateResult
        A check's outcome (:func:`harmony.gate.check_baseline`).

    Returns
    -------
    str

    Examples
    --------
    >>> import pandas as pd
    >>> from harmony.core import schema
    >>> from harmony.gate.compare import compare_features
    >>> rows = [("c1", "s", "original", 0, "original_firstorder_Mean", 1.0)]
    >>> base = pd.DataFrame(rows, columns=schema.FEATURES.names)
    >>> result = GateResult(compare_features(base, base.assign(value=1.5), {}), baseline="gate-baseline")
    >>> summary(result)
    'harmony gate FAILED: 1 of 1 features differ from the baseline'
    """
    n, bad = len(result.comparison), len(result.failed_features)
    verdict = "PASSED" if result.passed else "FAILED"
    extra = "; watched versions changed" if result.version_failed else ""
    return f"harmony gate {verdict}: {bad} of {n} features differ from the baseline{extra}"


def format_table(result: GateResult) -> str:
    """A plain-text table of every failing feature, then the notices (for a terminal's stderr).

    Parameters
    ----------
    result : GateResult
        A check's outcome.

    Returns
    -------
    str
        :func:`summary`, the aligned table, then one ``notice:`` line per version, setting or other notice.

    Examples
    --------
    >>> import pandas as pd
    >>> from harmony.core import schema
    >>> from harmony.gate.compare import compare_features
    >>> rows = [("c1", "s", "original", 0, "original_firstorder_Mean", 1.0)]
    >>> base = pd.DataFrame(rows, columns=schema.FEATURES.names)
    >>> result = GateResult(compare_features(base, base.assign(value=1.5), {}), baseline="gate-baseline")
    >>> print(format_table(result))
    harmony gate FAILED: 1 of 1 features differ from the baseline
    feature                   status   changed  max abs diff  max rel diff  CCC
    original_firstorder_Mean  changed  1/1      0.5           0.5           nan
    """
    failed = result.failed_features
    header = ("feature", "status", "changed", "max abs diff", "max rel diff", "CCC")
    rows = [(r[schema.FEATURE], r[STATUS], f"{r[N_CHANGED]}/{r[N_VALUES]}", _num(r[MAX_ABS]), _num(r[MAX_REL]),
             _num(r[CCC])) for r in failed.to_dict("records")]
    lines = [summary(result)]
    if rows:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        for row in (header, *rows):
            lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    lines += [f"notice: {line}" for line in _notice_lines(result)]
    return "\n".join(lines)


def markdown_report(result: GateResult) -> str:
    """The check as Markdown: verdict, notices, every failing feature with its numbers, counts by status.

    Parameters
    ----------
    result : GateResult
        A check's outcome.

    Returns
    -------
    str
        The ``gate.md`` report (a CI job summary, a pull-request comment).

    Examples
    --------
    >>> import pandas as pd
    >>> from harmony.core import schema
    >>> from harmony.gate.compare import compare_features
    >>> rows = [("c1", "s", "original", 0, "original_firstorder_Mean", 1.0)]
    >>> base = pd.DataFrame(rows, columns=schema.FEATURES.names)
    >>> result = GateResult(compare_features(base, base.assign(value=1.5), {}), baseline="gate-baseline")
    >>> markdown_report(result).splitlines()[0]
    '# harmony gate FAILED: 1 of 1 features differ from the baseline'
    """
    lines = [f"# {summary(result)}", "", f"Baseline: `{result.baseline}`", ""]
    notices = _notice_lines(result)
    if notices:
        lines += ["## Notices", ""] + [f"- {line}" for line in notices] + [""]
    failed = result.failed_features
    if len(failed):
        lines += ["## Features that differ", "",
                  "| feature | status | values changed | max abs diff | max rel diff | CCC | tolerance (rel, abs) |",
                  "|---|---|---|---|---|---|---|"]
        for r in failed.to_dict("records"):
            lines.append(f"| `{r[schema.FEATURE]}` | {r[STATUS]} | {r[N_CHANGED]}/{r[N_VALUES]} | {_num(r[MAX_ABS])} | "
                         f"{_num(r[MAX_REL])} | {_num(r[CCC])} | {r[REL_TOL]:g}, {r[ABS_TOL]:g} |")
        lines.append("")
    counts = result.comparison[STATUS].value_counts()
    lines += ["## Features by status", ""] + [f"- {status}: {n}" for status, n in counts.items()]
    return "\n".join(lines) + "\n"


def junit_xml(result: GateResult) -> str:
    """JUnit XML: one testcase per feature (failures carry the numbers), plus one for the watched versions.

    Parameters
    ----------
    result : GateResult
        A check's outcome.

    Returns
    -------
    str
        The ``junit.xml`` report, which CI systems show test by test.

    Examples
    --------
    >>> import pandas as pd
    >>> from harmony.core import schema
    >>> from harmony.gate.compare import compare_features
    >>> rows = [("c1", "s", "original", 0, "original_firstorder_Mean", 1.0)]
    >>> base = pd.DataFrame(rows, columns=schema.FEATURES.names)
    >>> result = GateResult(compare_features(base, base.assign(value=1.5), {}), baseline="gate-baseline")
    >>> junit_xml(result).splitlines()[1]
    '<testsuite name="harmony gate" tests="2" failures="1" errors="0" skipped="0">'
    """
    comparison = result.comparison
    n_failures = len(result.failed_features) + int(result.version_failed)
    suite = ET.Element("testsuite", name="harmony gate", tests=str(len(comparison) + 1),
                       failures=str(n_failures), errors="0", skipped="0")
    for r in comparison.to_dict("records"):
        case = ET.SubElement(suite, "testcase", classname=f"harmony.gate.{r[FEATURE_CLASS]}", name=r[schema.FEATURE])
        if not r[PASSED]:
            message = _failure_message(r)
            ET.SubElement(case, "failure", message=message, type=r[STATUS]).text = message
    case = ET.SubElement(suite, "testcase", classname="harmony.gate", name="versions")
    changes = "\n".join(f"{name}: {old} -> {new}" for name, old, new in result.versions)
    if result.version_failed:
        ET.SubElement(case, "failure", message="watched versions changed", type="version").text = changes
    elif changes:
        ET.SubElement(case, "system-out").text = changes
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_check_report(result: GateResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``gate.md``, ``junit.xml`` and ``comparison.csv`` into ``out_dir``.

    Parameters
    ----------
    result : GateResult
        A check's outcome.
    out_dir : str or os.PathLike
        Where to write (created when absent).

    Returns
    -------
    dict of str to pathlib.Path
        ``markdown``, ``junit`` and ``comparison``: the files written.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from harmony.core import schema
    >>> from harmony.gate.compare import compare_features
    >>> rows = [("c1", "s", "original", 0, "original_firstorder_Mean", 1.0)]
    >>> base = pd.DataFrame(rows, columns=schema.FEATURES.names)
    >>> result = GateResult(compare_features(base, base.assign(value=1.5), {}), baseline="gate-baseline")
    >>> with tempfile.TemporaryDirectory() as out:
    ...     sorted(p.name for p in write_check_report(result, out).values())
    ['comparison.csv', 'gate.md', 'junit.xml']
    """
    out = Path(out_dir)
    return {
        "markdown": write_text(out / "gate.md", markdown_report(result)),
        "junit": write_text(out / "junit.xml", junit_xml(result)),
        "comparison": atomic_write(out / "comparison.csv", lambda tmp: result.comparison.to_csv(tmp, index=False)),
    }
