"""The report's figures; each plot function takes ``ax=None`` and returns the Figure.

Figures are made with matplotlib's object-oriented API (:class:`matplotlib.figure.Figure`), never pyplot:
importing this module or drawing a report never selects a backend nor changes the one a user or a
notebook has chosen, and no figure is left open in pyplot's list.

Text from data (sites, features, perturbation kinds, truth variables) is drawn literally: every plot
function and :func:`figure_png` run with matplotlib's mathtext and TeX off (``text.parse_math`` and
``text.usetex`` False), so a site called ``$\\broken$`` is a label, not markup.
"""

from __future__ import annotations

import functools
import io as _io
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from harmony.core import schema
from harmony.harmonize import metrics as hm
from harmony.reliability.settings import ALL as ALL_PERTURBATIONS
from harmony.reliability.verdicts import category_bands, judged_values, judged_words

__all__ = ["KOO_LI_BANDS", "HEATMAP_TOP_N", "primary_metric", "plot_icc_distribution", "heatmap_features",
           "plot_icc_heatmap", "plot_site_effect", "pca_scores", "plot_pca", "plot_truth_correlation", "figure_png",
           "judged_rows"]

#: Koo & Li (2016) bands for reading an ICC: poor < 0.5 <= moderate < 0.75 <= good < 0.9 <= excellent.
KOO_LI_BANDS = ((0.0, 0.5, "poor", "#f4c7c3"), (0.5, 0.75, "moderate", "#fce8b2"),
                (0.75, 0.9, "good", "#d9ead3"), (0.9, 1.0, "excellent", "#b7e1cd"))
_BAND_COLOURS = tuple(band[3] for band in KOO_LI_BANDS)


#: Preference order when the manifest does not name the ICC form the run judged on.
_ICC_PREFERENCE = ("ICC(A,1)", "ICC(C,1)", "ICC(1,1)", "ICC(A,k)", "ICC(C,k)", "ICC(1,k)", "CCC")
#: Most features the reliability heatmap shows (:func:`heatmap_features`).
HEATMAP_TOP_N = 40
_SITE_COLOURS = colormaps["tab10"]
_TEST_LABELS = {"welch_anova": "Welch ANOVA", "anova": "ANOVA", "kruskal_wallis": "Kruskal-Wallis",
                "anderson_darling": "Anderson-Darling (p capped 0.001-0.25)"}


# -- small helpers ------------------------------------------------------------------------------------

#: matplotlib settings under which text is drawn as written: no mathtext ($...$), no TeX.
_LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False}


def _literal_text(draw: Callable) -> Callable:
    """Run ``draw`` with :data:`_LITERAL_TEXT`: matplotlib reads them when each text is made."""
    @functools.wraps(draw)
    def literal(*args, **kwargs):
        with rc_context(_LITERAL_TEXT):
            return draw(*args, **kwargs)
    return literal


def _axes(ax: Axes | None, figsize: tuple[float, float] = (7.0, 4.0)) -> tuple[Figure, Axes]:
    """The figure and axes to draw on: ``ax`` and its figure, or a new detached Figure of ``figsize``."""
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.add_subplot()
    return ax.figure, ax


def primary_metric(reliability: pd.DataFrame, manifest: Mapping[str, Any] | None = None) -> str:
    """The reliability metric the report shows: the run's configured ICC form when present in the table.

    Otherwise the first of ICC(A,1), ICC(C,1), ICC(1,1), ICC(A,k), ICC(C,k), ICC(1,k) and CCC in the table,
    else the table's first metric.

    Parameters
    ----------
    reliability : pandas.DataFrame
        The reliability table (its ``metric`` column is read).
    manifest : mapping, optional
        The run manifest; its ``config.reliability.icc`` is the configured form.

    Returns
    -------
    str
        The metric label, e.g. ``"ICC(A,1)"``.

    Raises
    ------
    ValueError
        When the table is empty.

    Examples
    --------
    >>> rel = pd.DataFrame({"metric": ["CCC", "ICC(C,1)"]})
    >>> primary_metric(rel), primary_metric(rel, {"config": {"reliability": {"icc": "CCC"}}})
    ('ICC(C,1)', 'CCC')
    """
    present = list(dict.fromkeys(reliability[schema.METRIC]))
    configured = ((manifest or {}).get("config") or {}).get("reliability") or {}
    wanted = configured.get("icc") if isinstance(configured, Mapping) else None
    if wanted in present:
        return wanted
    for metric in _ICC_PREFERENCE:
        if metric in present:
            return metric
    if not present:
        raise ValueError("the reliability table is empty: no metric to show")
    return present[0]


def _perturbation_order(kinds: Iterable[str]) -> list[str]:
    """Single perturbation families alphabetically, then the whole design ``all``."""
    kinds = {str(k) for k in kinds}
    return sorted(kinds - {ALL_PERTURBATIONS}) + ([ALL_PERTURBATIONS] if ALL_PERTURBATIONS in kinds else [])


def _kinds_of(reliability: pd.DataFrame) -> list[str]:
    return _perturbation_order(reliability[schema.PERTURBATION])


# -- figures ------------------------------------------------------------------------------------------

def judged_rows(reliability: pd.DataFrame, metric: str, settings: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The rows of ``metric`` with a ``judged`` column: the value its category and stable flag were read from.

    Parameters
    ----------
    reliability : pandas.DataFrame
        The reliability table.
    metric : str
        The metric.
    settings : mapping, optional
        The run's ``[reliability]`` settings (``judge_on``).

    Returns
    -------
    pandas.DataFrame
        The rows of ``metric`` and their ``judged`` value (:func:`harmony.reliability.verdicts.judged_values`).

    Examples
    --------
    >>> rel = pd.DataFrame({"metric": "ICC(A,1)", "estimate": [0.9], "ci_low": [0.7], "ci_high": [1.0]})
    >>> judged_rows(rel, "ICC(A,1)")["judged"].tolist()
    [0.7]
    """
    rows = reliability[reliability[schema.METRIC] == metric].copy()
    rows["judged"] = judged_values(rows, settings)
    return rows


def _band_labels(ax: Axes, bands: list[tuple[float, float, str]], left: float, right: float) -> None:
    """Band names above the axes, centred on each visible band; a name that would touch the previous one
    (narrow bands, an axis running far below 0) is raised a line."""
    fig = ax.figure
    width_pt = ax.get_position().width * fig.get_figwidth() * 72  # the layout keeps it about so
    previous_end, previous_raised = -np.inf, False
    for low, high, name in bands:
        low, high = max(low, left), min(high, right)
        if high <= low:
            continue
        centre = ((low + high) / 2 - left) / (right - left)
        half = 0.5 * len(name) * 8 * 0.6 / width_pt + 0.01  # about 0.6 em a character at 8 pt
        raised = centre - half < previous_end and not previous_raised
        ax.text(centre, 1.0 + (0.07 if raised else 0.0), name, transform=ax.transAxes, ha="center", va="bottom",
                fontsize=8, color="#555555")
        previous_end, previous_raised = centre + half, raised


@_literal_text
def plot_icc_distribution(reliability: pd.DataFrame, metric: str | None = None, ax: Axes | None = None,
                          settings: Mapping[str, Any] | None = None) -> Figure:
    """Box plot of every feature's judged reliability value, one box per perturbation kind, over its category bands.

    The value plotted is the one the categories and the stable flag are read from (the lower confidence
    bound by default, the estimate with ``judge_on = "estimate"``), so a point in a band is a feature of
    that category.

    Parameters
    ----------
    reliability : pandas.DataFrame
        The reliability table (``feature``, ``perturbation``, ``metric``, ``estimate``, ``ci_low``, ...), as
        :func:`harmony.reliability.table.reliability_table` writes it.
    metric : str, optional
        The metric to show; by default :func:`primary_metric` of the table.
    ax : matplotlib.axes.Axes, optional
        Draw on these axes; by default on a new Figure (not registered with pyplot).
    settings : mapping, optional
        The run's ``[reliability]`` settings: what is judged and the category thresholds.

    Returns
    -------
    matplotlib.figure.Figure
        The new figure, or ``ax.figure`` when ``ax`` is given.

    Examples
    --------
    >>> rel = pd.DataFrame({"feature": ["a", "a", "b", "b"], "perturbation": ["noise", "all"] * 2,
    ...                     "metric": "ICC(A,1)", "estimate": [0.95, 0.9, 0.4, 0.6],
    ...                     "ci_low": [0.9, 0.8, 0.1, 0.3], "ci_high": 1.0})
    >>> fig = plot_icc_distribution(rel)
    >>> [label.get_text() for label in fig.axes[0].get_yticklabels()]
    ['noise', 'all']
    """
    metric = metric or primary_metric(reliability)
    rows = judged_rows(reliability, metric, settings)
    kinds = _kinds_of(rows)
    fig, ax = _axes(ax, figsize=(7.5, 0.55 * len(kinds) + 1.8))
    data = [rows.loc[rows[schema.PERTURBATION] == k, "judged"].dropna().to_numpy() for k in kinds]
    low = min([0.0] + [float(np.min(v)) for v in data if len(v)])
    left, right = max(low, -1.0) - 0.02, 1.02
    bands = category_bands(metric, settings)
    for (band_low, band_high, _), colour in zip(bands, _BAND_COLOURS):
        ax.axvspan(max(band_low, left), min(band_high, right), color=colour, alpha=0.6, lw=0, zorder=0)
    _band_labels(ax, bands, left, right)
    if kinds:
        ax.boxplot(data, orientation="horizontal", tick_labels=kinds, widths=0.55, showfliers=False,
                   patch_artist=True, boxprops={"facecolor": "white", "alpha": 0.85}, medianprops={"color": "#1f4e79"},
                   zorder=2)
        for i, values in enumerate(data, start=1):
            jitter = np.linspace(-0.18, 0.18, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.scatter(values, i + jitter, s=7, color="#1f4e79", alpha=0.45, lw=0, zorder=3)
    if low < -1.0:
        ax.annotate(f"{sum(int((v < -1).sum()) for v in data)} value(s) below -1 not shown", (0.0, -0.16),
                    xycoords="axes fraction", fontsize=7, color="#555555")
    ax.set_xlim(left, right)
    ax.set_xlabel(f"{judged_words(metric, settings)} of {metric}, per feature")
    ax.set_ylabel("perturbation kind")
    ax.invert_yaxis()
    return fig


def heatmap_features(reliability: pd.DataFrame, metric: str, top_n: int = HEATMAP_TOP_N,
                     settings: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, bool]:
    """Features x perturbation kinds matrix of the judged value of ``metric``, at most ``top_n`` features.

    When there are more than ``top_n`` features, the ``top_n`` whose judged value (:func:`judged_rows`)
    varies most between kinds are kept (they tell kinds apart).

    Parameters
    ----------
    reliability : pandas.DataFrame
        The reliability table.
    metric : str
        The metric whose estimates fill the matrix.
    top_n : int, default HEATMAP_TOP_N
        The most features kept.
    settings : mapping, optional
        The run's ``[reliability]`` settings (what is judged).

    Returns
    -------
    matrix : pandas.DataFrame
        Features (rows; best first under the whole design ``all`` when present) x perturbation kinds.
    truncated : bool
        Whether features were left out.

    Examples
    --------
    >>> rel = pd.DataFrame({"feature": ["a", "a", "b", "b"], "perturbation": ["noise", "all"] * 2,
    ...                     "metric": "ICC(A,1)", "estimate": [0.95, 0.9, 0.4, 0.6],
    ...                     "ci_low": [0.9, 0.8, 0.1, 0.5], "ci_high": 1.0})
    >>> matrix, truncated = heatmap_features(rel, "ICC(A,1)", top_n=1)
    >>> list(matrix.index), list(matrix.columns), truncated
    (['b'], ['noise', 'all'], True)
    """
    rows = judged_rows(reliability, metric, settings)
    matrix = rows.pivot_table(index=schema.FEATURE, columns=schema.PERTURBATION, values="judged", aggfunc="first",
                              dropna=False)
    matrix = matrix[_perturbation_order(matrix.columns)]
    truncated = len(matrix) > top_n
    if truncated:
        spread = (matrix.max(axis=1) - matrix.min(axis=1)).fillna(0.0)
        order = pd.DataFrame({"spread": spread, "low": matrix.min(axis=1).fillna(0.0)})
        keep = order.sort_values(["spread", "low"], ascending=[False, True]).index[:top_n]
        matrix = matrix.loc[keep]
    if ALL_PERTURBATIONS in matrix.columns:
        matrix = matrix.sort_values(ALL_PERTURBATIONS, ascending=False)
    return matrix, truncated


@_literal_text
def plot_icc_heatmap(reliability: pd.DataFrame, metric: str | None = None, top_n: int = HEATMAP_TOP_N,
                     ax: Axes | None = None, settings: Mapping[str, Any] | None = None) -> Figure:
    """Heatmap of the judged value of ``metric``, features (rows) x perturbation kinds (columns), 0 (red) to 1 (green).

    Parameters
    ----------
    reliability : pandas.DataFrame
        The reliability table.
    metric : str, optional
        The metric to show; by default :func:`primary_metric` of the table.
    top_n : int, default HEATMAP_TOP_N
        At most this many features, the most kind-dependent ones (:func:`heatmap_features`).
    ax : matplotlib.axes.Axes, optional
        Draw on these axes; by default on a new Figure (not registered with pyplot).
    settings : mapping, optional
        The run's ``[reliability]`` settings (what is judged).

    Returns
    -------
    matplotlib.figure.Figure
        The new figure, or ``ax.figure`` when ``ax`` is given.

    Examples
    --------
    >>> rel = pd.DataFrame({"feature": ["a", "a", "b", "b"], "perturbation": ["noise", "all"] * 2,
    ...                     "metric": "ICC(A,1)", "estimate": [0.95, 0.9, 0.4, 0.6],
    ...                     "ci_low": [0.9, 0.8, 0.1, 0.5], "ci_high": 1.0})
    >>> plot_icc_heatmap(rel, settings={"judge_on": "estimate"}).axes[0].get_title()
    'ICC(A,1) point estimate by perturbation kind'
    """
    metric = metric or primary_metric(reliability)
    matrix, truncated = heatmap_features(reliability, metric, top_n, settings)
    fig, ax = _axes(ax, figsize=(1.1 * max(len(matrix.columns), 3) + 4.5, 0.22 * len(matrix) + 1.8))
    cmap = colormaps["RdYlGn"].with_extremes(under="#7f0000", bad="#dddddd")
    image = ax.imshow(matrix.to_numpy(dtype=float), aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
    ax.set_xticks(range(len(matrix.columns)), [str(c) for c in matrix.columns], rotation=30, ha="right")
    ax.set_yticks(range(len(matrix)), [str(f) for f in matrix.index], fontsize=7)
    ax.tick_params(length=0)
    title = f"{metric} {judged_words(metric, settings)} by perturbation kind"
    if truncated:
        title += f" ({len(matrix)} most kind-dependent features)"
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label=f"{metric} ({judged_words(metric, settings).split(' of ')[0]})", extend="min",
                 shrink=0.8)
    return fig


@_literal_text
def plot_site_effect(site_effects: pd.DataFrame, ax: Axes | None = None, alpha: float = 0.05) -> Figure:
    """Per feature, the site-effect p value before (x) and after (y) harmonization, as -log10(p).

    The Benjamini-Hochberg adjusted p value is plotted, so the dashed lines at p = ``alpha`` separate the
    features judged significant. Points below the diagonal lost site effect.

    Parameters
    ----------
    site_effects : pandas.DataFrame
        harmonize's site-effects table (:data:`harmony.harmonize.metrics.SITE_EFFECTS`): one row per feature,
        stage (``raw``, ``combat``) and test, with the adjusted p value in ``pvalue_bh``.
    ax : matplotlib.axes.Axes, optional
        Draw on these axes; by default on a new Figure (not registered with pyplot).
    alpha : float, default 0.05
        The significance level drawn as dashed lines.

    Returns
    -------
    matplotlib.figure.Figure
        The new figure, or ``ax.figure`` when ``ax`` is given.

    Examples
    --------
    >>> effects = pd.DataFrame({"feature": ["a", "a", "b", "b"], "test": "anova",
    ...                         "stage": ["raw", "combat"] * 2, "pvalue_bh": [1e-6, 0.4, 1e-3, 0.8]})
    >>> len(plot_site_effect(effects).axes[0].collections[0].get_offsets())  # one point per feature
    2
    """
    fig, ax = _axes(ax, figsize=(5.4, 4.6))
    wide = site_effects.pivot_table(index=[schema.FEATURE, hm.TEST], columns=schema.STAGE, values=hm.PVALUE_BH,
                                    aggfunc="first")
    score = -np.log10(wide.clip(lower=1e-300))
    for i, (test, group) in enumerate(score.groupby(level=hm.TEST)):
        if {"raw", "combat"} <= set(group.columns):
            ax.scatter(group["raw"], group["combat"], s=14, alpha=0.7, label=_TEST_LABELS.get(str(test), str(test)),
                       color=_SITE_COLOURS(i), marker="x" if test == "anderson_darling" else "o")
    line = -np.log10(alpha)

    def top(stage: str) -> float:  # each axis to its own points, never below the significance line
        values = score[stage].to_numpy(dtype=float) if stage in score.columns else np.array([])
        finite = values[np.isfinite(values)]
        return max(float(finite.max()) if finite.size else 0.0, line) * 1.15

    x_top, y_top = top("raw"), top("combat")
    ax.plot([0, min(x_top, y_top)], [0, min(x_top, y_top)], color="#888888", lw=1)
    for draw in (ax.axvline, ax.axhline):
        draw(line, color="#c0392b", lw=1, ls="--")
    ax.set_xlim(0, x_top)
    ax.set_ylim(0, y_top)
    ax.set_xlabel("site effect before, -log10(adjusted p)")
    ax.set_ylabel("site effect after ComBat, -log10(adjusted p)")
    if ax.get_legend_handles_labels()[0]:  # after harmonization the points lie low: the legend goes up
        ax.legend(title="test", fontsize=8, loc="upper right")
    return fig


def pca_scores(harmonized: pd.DataFrame, stage: str) -> pd.DataFrame:
    """First two principal components of the standardised original-variant features of one stage.

    Features missing for some case or constant are left out.

    Parameters
    ----------
    harmonized : pandas.DataFrame
        harmonize's long table (the features table with a ``stage`` column).
    stage : str
        The stage to project, ``raw`` or ``combat``.

    Returns
    -------
    pandas.DataFrame
        Columns case_id, site, PC1, PC2; the explained variance ratios in ``.attrs["explained"]``.

    Raises
    ------
    ValueError
        With fewer than 3 cases or 2 varying features.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> long = pd.DataFrame([{"case_id": f"c{i}", "site": "AB"[i % 2], "variant_id": "original", "repeat": 0,
    ...                       "feature": f, "value": rng.normal(), "stage": "raw"} for i in range(6) for f in "xyz"])
    >>> scores = pca_scores(long, "raw")
    >>> list(scores.columns), len(scores)
    (['case_id', 'site', 'PC1', 'PC2'], 6)
    """
    from sklearn.decomposition import PCA

    rows = harmonized[(harmonized[schema.STAGE] == stage) & (harmonized[schema.VARIANT_ID] == schema.ORIGINAL)]
    rows = rows[rows[schema.REPEAT] == rows[schema.REPEAT].min()] if len(rows) else rows
    site = rows.drop_duplicates(schema.CASE_ID).set_index(schema.CASE_ID)[schema.SITE]
    wide = schema.wide_features(rows, index=(schema.CASE_ID,)).set_index(schema.CASE_ID)
    wide.index = pd.MultiIndex.from_arrays([wide.index, site.reindex(wide.index)], names=[schema.CASE_ID, schema.SITE])
    wide = wide.dropna(axis=1)
    wide = wide.loc[:, wide.std(axis=0) > 0]
    if wide.shape[0] < 3 or wide.shape[1] < 2:
        raise ValueError(f"PCA of stage {stage!r} needs >= 3 cases and >= 2 varying features, "
                         f"got {wide.shape[0]} cases x {wide.shape[1]} features")
    z = (wide - wide.mean()) / wide.std(axis=0)
    pca = PCA(n_components=2, svd_solver="full")
    scores = pca.fit_transform(z.to_numpy())
    out = wide.index.to_frame(index=False)
    out["PC1"], out["PC2"] = scores[:, 0], scores[:, 1]
    out.attrs["explained"] = pca.explained_variance_ratio_.tolist()
    return out


@_literal_text
def plot_pca(harmonized: pd.DataFrame, stage: str = "raw", ax: Axes | None = None) -> Figure:
    """Cases on the first two principal components of their features (:func:`pca_scores`), coloured by site.

    Parameters
    ----------
    harmonized : pandas.DataFrame
        harmonize's long table (the features table with a ``stage`` column).
    stage : str, default "raw"
        The stage to show, ``raw`` or ``combat``.
    ax : matplotlib.axes.Axes, optional
        Draw on these axes; by default on a new Figure (not registered with pyplot).

    Returns
    -------
    matplotlib.figure.Figure
        The new figure, or ``ax.figure`` when ``ax`` is given.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> long = pd.DataFrame([{"case_id": f"c{i}", "site": "AB"[i % 2], "variant_id": "original", "repeat": 0,
    ...                       "feature": f, "value": rng.normal(), "stage": "raw"} for i in range(6) for f in "xyz"])
    >>> fig = Figure()
    >>> ax = fig.add_subplot()
    >>> plot_pca(long, "raw", ax=ax) is fig, len(ax.collections)  # drawn on ax: one scatter per site
    (True, 2)
    """
    fig, ax = _axes(ax, figsize=(5.0, 4.4))
    scores = pca_scores(harmonized, stage)
    for i, (site, group) in enumerate(scores.groupby(schema.SITE, sort=True)):
        ax.scatter(group["PC1"], group["PC2"], s=26, alpha=0.85, label=str(site), color=_SITE_COLOURS(i % 10),
                   edgecolor="white", lw=0.5)
    explained = scores.attrs["explained"]
    ax.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%} of variance)")
    ax.set_title({"raw": "before harmonization", "combat": "after ComBat"}.get(stage, stage), fontsize=10)
    # below the axes, so that the legend never hides a case
    ax.legend(title="site", fontsize=7, title_fontsize=8, markerscale=0.9, loc="upper center",
              bbox_to_anchor=(0.5, -0.16), ncols=min(3, scores[schema.SITE].nunique()), frameon=False)
    return fig


@_literal_text
def plot_truth_correlation(truth_correlation: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Per feature and truth variable, |r| with the truth before (x) and after (y) harmonization.

    Points on the diagonal kept their biology; points above it gained signal once site noise was removed.

    Parameters
    ----------
    truth_correlation : pandas.DataFrame
        harmonize's table (:data:`harmony.harmonize.metrics.TRUTH_CORRELATION`): feature, truth, stage and
        the correlation in ``estimate``.
    ax : matplotlib.axes.Axes, optional
        Draw on these axes; by default on a new Figure (not registered with pyplot).

    Returns
    -------
    matplotlib.figure.Figure
        The new figure, or ``ax.figure`` when ``ax`` is given.

    Examples
    --------
    >>> truth = pd.DataFrame({"feature": ["a", "a"], "truth": "truth_size", "stage": ["raw", "combat"],
    ...                       "estimate": [0.5, -0.6]})
    >>> plot_truth_correlation(truth).axes[0].collections[0].get_offsets().tolist()
    [[0.5, 0.6]]
    """
    fig, ax = _axes(ax, figsize=(5.4, 4.6))
    wide = truth_correlation.pivot_table(index=[schema.FEATURE, hm.TRUTH], columns=schema.STAGE,
                                         values=schema.ESTIMATE, aggfunc="first").abs()
    for i, (truth, group) in enumerate(wide.groupby(level=hm.TRUTH)):
        if {"raw", "combat"} <= set(group.columns):
            label = str(truth).removeprefix(schema.TRUTH_PREFIX)
            for unit in ("mm3", "mm"):  # truth_radius_mm -> radius (mm)
                if label.endswith(f"_{unit}"):
                    label = f"{label[:-len(unit) - 1]} ({unit})"
                    break
            ax.scatter(group["raw"], group["combat"], s=14, alpha=0.7, label=label, color=_SITE_COLOURS(i % 10))
    ax.plot([0, 1], [0, 1], color="#888888", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("|r| with the truth, before")
    ax.set_ylabel("|r| with the truth, after ComBat")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="truth variable", fontsize=8)
    return fig


@_literal_text
def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes at 110 dpi, the resolution of the report.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Any figure; a figure of the plot functions here belongs to no pyplot state, so nothing needs closing.

    Returns
    -------
    bytes
        The PNG file.

    Examples
    --------
    >>> figure_png(Figure(figsize=(1, 1)))[:4]
    b'\\x89PNG'
    """
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
