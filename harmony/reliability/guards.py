"""Guards on a reliability study: enough cases and conditions, one modality, one label meaning.

Koo & Li (2016, J Chiropr Med 15:155) recommend "at least 30 heterogeneous samples and at least 3 raters"
for an ICC study. Below a hard floor (``reliability.min_cases``, default 3: the fewest for which Lin's CCC
interval and the ICC's F interval have a residual degree of freedom per case) the analysis is refused; below
the recommendation it runs with a warning that states the 95% interval an ICC of 0.90 would get.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from scipy import stats

from harmony.core import schema
from harmony.core.errors import StudyError
from harmony.core.notices import warn

__all__ = [
    "LABEL_MEANING",
    "MODALITY",
    "TYPICAL_ICC",
    "check_homogeneous",
    "check_study_size",
    "expected_icc_interval",
    "study_size_sentence",
]

#: Cases-table column naming each case's imaging modality (CT, MR, PET); DICOM images also say it.
MODALITY = "modality"
#: Cases-table column naming what the mask's label means (``lesion``, ``liver``).
LABEL_MEANING = "label_meaning"
#: The ICC whose expected interval the guards report: the "excellent" bound of Koo & Li.
TYPICAL_ICC = 0.9
_DICOM_MODALITY = "0008|0060"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def expected_icc_interval(n_cases: int, n_conditions: int, icc: float = TYPICAL_ICC,
                          confidence: float = 0.95) -> tuple[float, float]:
    """The confidence interval an observed consistency ICC(C,1) of ``icc`` gets with this many cases and conditions.

    The F-based interval of Shrout & Fleiss (1979) / McGraw & Wong (1996), evaluated at the F ratio the
    ICC implies, F = (1 + (k - 1) icc) / (1 - icc): how wide the answer of a study of this size is.

    Parameters
    ----------
    n_cases, n_conditions : int
        Cases (>= 2) and conditions (raters, >= 2).
    icc : float, default 0.9
        The observed ICC, in (-1/(k-1), 1).
    confidence : float, default 0.95
        Confidence level.

    Returns
    -------
    (float, float)
        The lower and upper bound.

    Raises
    ------
    ValueError
        Fewer than 2 cases or conditions, or ``icc`` outside its range.

    Examples
    --------
    With Koo & Li's 30 cases and 3 raters an ICC of 0.90 is known to about +-0.07; with 5 cases the lower
    bound falls into "moderate":

    >>> [round(b, 2) for b in expected_icc_interval(30, 3)]
    [0.83, 0.95]
    >>> [round(b, 2) for b in expected_icc_interval(5, 3)]
    [0.6, 0.99]
    """
    if n_cases < 2 or n_conditions < 2:
        raise ValueError(f"an ICC interval needs >= 2 cases and >= 2 conditions, got {n_cases} and {n_conditions}")
    k = n_conditions
    if not -1 / (k - 1) < icc < 1:
        raise ValueError(f"icc must be in (-1/(k-1), 1) = ({-1 / (k - 1):.3g}, 1), got {icc!r}")
    f = (1 + (k - 1) * icc) / (1 - icc)
    df_b, df_e = n_cases - 1, (n_cases - 1) * (k - 1)
    q = 0.5 + confidence / 2
    f_low, f_up = f / stats.f.ppf(q, df_b, df_e), f * stats.f.ppf(q, df_e, df_b)
    return float((f_low - 1) / (f_low + k - 1)), float((f_up - 1) / (f_up + k - 1))


def study_size_sentence(n_cases: int, n_conditions: int, settings: Mapping[str, Any]) -> str:
    """One sentence: the interval an ICC of 0.90 gets at this study size, against Koo & Li's recommendation.

    Parameters
    ----------
    n_cases, n_conditions : int
        The study's cases and conditions (of its smallest perturbation group).
    settings : mapping
        Resolved ``[reliability]`` settings (``confidence``, ``recommended_cases``, ``recommended_conditions``).

    Returns
    -------
    str

    Examples
    --------
    >>> from harmony.reliability.settings import resolve_settings
    >>> study_size_sentence(30, 3, resolve_settings())
    'With 30 cases and 3 conditions, an ICC of 0.90 has a 95% interval of about [0.83, 0.95] (width 0.12).'
    """
    conf = settings["confidence"]
    if n_cases < 2 or n_conditions < 2:
        return (f"With {_plural(n_cases, 'case')} and {_plural(n_conditions, 'condition')} no ICC interval "
                "exists at all.")
    text = (f"With {_plural(n_cases, 'case')} and {_plural(n_conditions, 'condition')}, an ICC of "
            f"{TYPICAL_ICC:.2f} has a {conf:.0%} interval of about [{{:.2f}}, {{:.2f}}] (width {{:.2f}}).")
    low, high = expected_icc_interval(n_cases, n_conditions, confidence=conf)
    text = text.format(low, high, high - low)
    want_n, want_k = settings["recommended_cases"], settings["recommended_conditions"]
    if n_cases < want_n or n_conditions < want_k:
        low_r, high_r = expected_icc_interval(max(n_cases, want_n), max(n_conditions, want_k), confidence=conf)
        text += (f" Koo & Li (2016) recommend >= {want_n} heterogeneous cases and >= {want_k} raters, which would "
                 f"narrow it to [{low_r:.2f}, {high_r:.2f}] (width {high_r - low_r:.2f}).")
    return text


def check_study_size(case_ids: Sequence[str], group_conditions: Mapping[str, int],
                     settings: Mapping[str, Any]) -> None:
    """Refuse a study below the floor (``min_cases``); warn below the recommendation or with the floor lowered.

    Parameters
    ----------
    case_ids : sequence of str
        The cases that have values.
    group_conditions : mapping of str to int
        Conditions (original included) of each perturbation group.
    settings : mapping
        Resolved ``[reliability]`` settings.

    Raises
    ------
    StudyError
        Fewer cases than ``reliability.min_cases``.

    Examples
    --------
    >>> from harmony.reliability.settings import resolve_settings
    >>> check_study_size(["a", "b"], {"all": 3}, resolve_settings())
    Traceback (most recent call last):
    ...
    harmony.core.errors.StudyError: reliability: 2 cases ('a', 'b'); a reliability analysis needs >= 3 ...
    """
    n, floor = len(case_ids), settings["min_cases"]
    shown = ", ".join(repr(str(c)) for c in list(case_ids)[:5]) + (", ..." if n > 5 else "")
    if n < floor:
        raise StudyError(
            f"reliability: {_plural(n, 'case')} ({shown}); a reliability analysis needs >= {floor} "
            f"(reliability.min_cases) and Koo & Li (2016) recommend >= {settings['recommended_cases']} "
            "heterogeneous cases: with fewer, the between-case spread is a few points and any ICC is "
            "meaningless. Add cases, or lower the guard (--set reliability.min_cases=N) to run anyway with "
            "a warning")
    smallest = min(group_conditions.values(), default=0)
    size = study_size_sentence(n, smallest, settings)
    if n < 3:
        warn(f"GUARD LOWERED: reliability on {_plural(n, 'case')} (reliability.min_cases={floor}); no "
             f"interval or category below is meaningful. {size}")
    elif n < settings["recommended_cases"]:
        warn(f"only {_plural(n, 'case')} for reliability: intervals are wide and categories judged on "
             f"the lower bound are conservative. {size}")
    few = sorted(g for g, k in group_conditions.items() if k < settings["recommended_conditions"])
    if few:
        warn(f"perturbation group(s) {', '.join(few)} have fewer than {settings['recommended_conditions']} "
             "conditions (original included; Koo & Li recommend >= 3 raters): their intervals are wide")


def _dicom_modality(path: str) -> str | None:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader.GetMetaData(_DICOM_MODALITY).strip() if reader.HasMetaDataKey(_DICOM_MODALITY) else None


def check_homogeneous(cases: pd.DataFrame | None, case_ids: Sequence[str] | None = None) -> None:
    """Warn when one reliability analysis mixes modalities or label meanings.

    The modality comes from a ``modality`` column of the cases table, else from the images' DICOM
    Modality tag (0008,0060) where the header has one; the label meaning from a ``label_meaning`` column.
    Mixed cases inflate the between-case variance, so ICC and CCC look better than they are.

    Parameters
    ----------
    cases : DataFrame or None
        The cases table (nothing is checked without it).
    case_ids : sequence of str, optional
        The cases of the analysis (default: all rows).

    Examples
    --------
    >>> from harmony.core.notices import collect_warnings
    >>> cases = pd.DataFrame({"case_id": ["a", "b"], "modality": ["CT", "MR"]})
    >>> with collect_warnings() as log:
    ...     check_homogeneous(cases)
    >>> print(log.lines()[0][:52])
    cases of 2 modalities in one reliability analysis (C
    """
    if cases is None or not len(cases):
        return
    if case_ids is not None and schema.CASE_ID in cases.columns:
        cases = cases[cases[schema.CASE_ID].astype(str).isin({str(c) for c in case_ids})]
    if MODALITY in cases.columns:
        modality = cases[MODALITY].astype("string").str.upper()
    elif schema.IMAGE in cases.columns:
        modality = pd.Series([_dicom_modality(p) for p in cases[schema.IMAGE]], index=cases.index, dtype="string")
    else:
        modality = pd.Series(pd.NA, index=cases.index, dtype="string")
    for what, values, advice in (
            ("modalities", modality, "analyse each modality separately"),
            ("label meanings", cases[LABEL_MEANING].astype("string") if LABEL_MEANING in cases.columns else None,
             "analyse each structure separately")):
        if values is None:
            continue
        counts = values.dropna().value_counts().sort_index()
        if len(counts) > 1:
            listed = ", ".join(f"{k}: {_plural(int(v), 'case')}" for k, v in counts.items())
            warn(f"cases of {len(counts)} {what} in one reliability analysis ({listed}): the difference between "
                 f"them swamps the between-case spread, so ICC and CCC look better than they are; {advice}")
