"""The report's figures; each plot function takes ``ax=None`` and returns the Figure."""

from __future__ import annotations

import io as _io
from collections.abc import Iterable, Mapping
from typing import Any

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harmony.core import schema
from harmony.harmonize import metrics as hm
from harmony.reliability.settings import ALL as ALL_PERTURBATIONS

#: Koo & Li (2016) bands for reading an ICC: poor < 0.5 <= moderate < 0.75 <= good < 0.9 <= excellent.
KOO_LI_BANDS = ((0.0, 0.5, "poor", "#f4c7c3"), (0.5, 0.75, "moderate", "#fce8b2"),
                (0.75, 0.9, "good", "#d9ead3"), (0.9, 1.0, "excellent", "#b7e1cd"))


#: Preference order when the manifest does not name the ICC form the run judged on.
_ICC_PREFERENCE = ("ICC(A,1)", "ICC(C,1)", "ICC(1,1)", "ICC(A,k)", "ICC(C,k)", "ICC(1,k)", "CCC")


HEATMAP_TOP_N = 40


_SITE_COLOURS = plt.get_cmap("tab10")


# -- small helpers ------------------------------------------------------------------------------------

def _axes(ax, figsize=(7.0, 4.0)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    return ax.figure, ax


def primary_metric(reliability: pd.DataFrame, manifest: Mapping[str, Any] | None = None) -> str:
    """The reliability metric the report shows: the run's configured ICC form when present in the table.

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

def plot_icc_distribution(reliability: pd.DataFrame, metric: str | None = None, ax=None) -> Figure:
    """Box plot of every feature's reliability estimate, one box per perturbation kind, over Koo & Li bands."""
    metric = metric or primary_metric(reliability)
    rows = reliability[reliability[schema.METRIC] == metric]
    kinds = _kinds_of(rows)
    fig, ax = _axes(ax, figsize=(7.5, 0.55 * len(kinds) + 1.6))
    for low, high, name, colour in KOO_LI_BANDS:
        ax.axvspan(low, high, color=colour, alpha=0.6, lw=0, zorder=0)
        ax.text((low + high) / 2, 1.0, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=8, color="#555555")
    data = [rows.loc[rows[schema.PERTURBATION] == k, schema.ESTIMATE].dropna().to_numpy() for k in kinds]
    if kinds:
        ax.boxplot(data, orientation="horizontal", tick_labels=kinds, widths=0.55, showfliers=False,
                   patch_artist=True, boxprops={"facecolor": "white", "alpha": 0.85}, medianprops={"color": "#1f4e79"},
                   zorder=2)
        for i, values in enumerate(data, start=1):
            jitter = np.linspace(-0.18, 0.18, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.scatter(values, i + jitter, s=7, color="#1f4e79", alpha=0.45, lw=0, zorder=3)
    low = min([0.0] + [float(np.min(v)) for v in data if len(v)])
    ax.set_xlim(max(low, -1.0) - 0.02, 1.02)
    ax.set_xlabel(f"{metric} per feature (higher = more reproducible)")
    ax.set_ylabel("perturbation kind")
    ax.invert_yaxis()
    return fig


def heatmap_features(reliability: pd.DataFrame, metric: str, top_n: int = HEATMAP_TOP_N) -> tuple[pd.DataFrame, bool]:
    """Features x perturbation kinds matrix of ``metric``; when there are more than ``top_n`` features, the
    ``top_n`` whose estimate varies most between kinds (they tell kinds apart). Returns (matrix, truncated).
    """
    rows = reliability[reliability[schema.METRIC] == metric]
    matrix = rows.pivot_table(index=schema.FEATURE, columns=schema.PERTURBATION, values=schema.ESTIMATE,
                              aggfunc="first")
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


def plot_icc_heatmap(reliability: pd.DataFrame, metric: str | None = None, top_n: int = HEATMAP_TOP_N,
                     ax=None) -> Figure:
    """Heatmap of ``metric`` for features (rows) x perturbation kinds (columns), 0 (red) to 1 (green)."""
    metric = metric or primary_metric(reliability)
    matrix, truncated = heatmap_features(reliability, metric, top_n)
    fig, ax = _axes(ax, figsize=(1.1 * max(len(matrix.columns), 3) + 4.5, 0.22 * len(matrix) + 1.8))
    cmap = plt.get_cmap("RdYlGn").with_extremes(under="#7f0000", bad="#dddddd")
    image = ax.imshow(matrix.to_numpy(dtype=float), aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
    ax.set_xticks(range(len(matrix.columns)), [str(c) for c in matrix.columns], rotation=30, ha="right")
    ax.set_yticks(range(len(matrix)), [str(f) for f in matrix.index], fontsize=7)
    ax.tick_params(length=0)
    title = f"{metric} by perturbation kind"
    if truncated:
        title += f" ({len(matrix)} most kind-dependent features)"
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label=metric, extend="min", shrink=0.8)
    return fig


def plot_site_effect(site_effects: pd.DataFrame, ax=None, alpha: float = 0.05) -> Figure:
    """Per feature, the site-effect p value before (x) and after (y) harmonization, as -log10(p).

    ``site_effects`` is harmonize's table (:data:`harmony.harmonization_metrics.SITE_EFFECTS`): one row per
    feature, stage and test; the Benjamini-Hochberg adjusted p value is plotted, so the dashed lines at
    p = ``alpha`` separate the features judged significant. Points below the diagonal lost site effect.
    """
    fig, ax = _axes(ax, figsize=(5.4, 4.6))
    wide = site_effects.pivot_table(index=[schema.FEATURE, hm.TEST], columns=schema.STAGE, values=hm.PVALUE_BH,
                                    aggfunc="first")
    score = -np.log10(wide.clip(lower=1e-300))
    for i, (test, group) in enumerate(score.groupby(level=hm.TEST)):
        if {"raw", "combat"} <= set(group.columns):
            ax.scatter(group["raw"], group["combat"], s=14, alpha=0.7, label=str(test), color=_SITE_COLOURS(i))
    top = float(np.nanmax(score.to_numpy())) if score.size else 1.0
    top = max(top, -np.log10(alpha)) * 1.05
    ax.plot([0, top], [0, top], color="#888888", lw=1)
    for line in (ax.axvline, ax.axhline):
        line(-np.log10(alpha), color="#c0392b", lw=1, ls="--")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("site effect before, -log10(adjusted p)")
    ax.set_ylabel("site effect after ComBat, -log10(adjusted p)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="test", fontsize=8)
    return fig


def pca_scores(harmonized: pd.DataFrame, stage: str) -> pd.DataFrame:
    """First two principal components of the standardised original-variant features of one stage.

    Features missing for some case or constant are left out. Returns columns case_id, site, PC1, PC2 and
    the explained variance ratios in ``.attrs["explained"]``.
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


def plot_pca(harmonized: pd.DataFrame, stage: str = "raw", ax=None) -> Figure:
    """Cases on the first two principal components of their features, coloured by site."""
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


def plot_truth_correlation(truth_correlation: pd.DataFrame, ax=None) -> Figure:
    """Per feature and truth variable, |r| with the truth before (x) and after (y) harmonization.

    ``truth_correlation`` is harmonize's table (:data:`harmony.harmonization_metrics.TRUTH_CORRELATION`).

    Points on the diagonal kept their biology; points above it gained signal once site noise was removed.
    """
    fig, ax = _axes(ax, figsize=(5.4, 4.6))
    wide = truth_correlation.pivot_table(index=[schema.FEATURE, hm.TRUTH], columns=schema.STAGE,
                                         values=schema.ESTIMATE, aggfunc="first").abs()
    for i, (truth, group) in enumerate(wide.groupby(level=hm.TRUTH)):
        if {"raw", "combat"} <= set(group.columns):
            label = str(truth).removeprefix(schema.TRUTH_PREFIX)
            ax.scatter(group["raw"], group["combat"], s=14, alpha=0.7, label=label, color=_SITE_COLOURS(i % 10))
    ax.plot([0, 1], [0, 1], color="#888888", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("|r| with the truth, before")
    ax.set_ylabel("|r| with the truth, after ComBat")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="truth variable", fontsize=8)
    return fig


def figure_png(fig: Figure) -> bytes:
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
