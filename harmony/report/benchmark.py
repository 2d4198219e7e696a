"""The harmonizer benchmark's figures and HTML page (``harmony harmonizers compare`` and ``like``).

Plot functions take ``ax=None`` and return the Figure, as :mod:`harmony.report.figures` does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from harmony.report.figures import _axes
from harmony.report.page import _CSS, _e, _Figures, _read, _table

__all__ = ["plot_metric_grid", "plot_ranked", "plot_sample_size_curve", "render_benchmark_report"]


def plot_ranked(ranked: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Each method's mean normalised rank (0 best), best at the top.

    Parameters
    ----------
    ranked : DataFrame
        From :func:`harmony.harmonize.benchmark.cells.rank_methods`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> plot_ranked(pd.DataFrame({"method": ["combat", "none"], "score": [0.2, 0.9]})).axes[0].get_xlabel()
    'mean normalised rank (0 = best)'
    """
    fig, ax = _axes(ax, (6.0, 0.35 * len(ranked) + 1.2))
    order = ranked.iloc[::-1]
    ax.barh(order["method"], order["score"], color="#1f4e79")
    ax.set_xlabel("mean normalised rank (0 = best)")
    ax.set_xlim(0, 1)
    return fig


def plot_metric_grid(scores: pd.DataFrame, metric: str, split: str = "test", ax: Axes | None = None) -> Figure:
    """Heatmap of one metric, cohorts (rows) by methods (columns), means over replicates.

    Parameters
    ----------
    scores : DataFrame
        Tidy scores (``cohort, method, split, metric, value``).
    metric : str
    split : str, default "test"
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        When ``scores`` has no row of ``metric`` and ``split``.
    """
    data = scores[(scores["metric"] == metric) & (scores["split"] == split)]
    if data.empty:
        raise ValueError(f"no scores of metric {metric!r} on split {split!r}")
    grid = data.pivot_table(index="cohort", columns="method", values="value", sort=False)
    fig, ax = _axes(ax, (0.6 * grid.shape[1] + 3.0, 0.35 * grid.shape[0] + 1.8))
    image = ax.imshow(grid.to_numpy(float), aspect="auto", cmap="viridis")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=60, ha="right")
    ax.set_yticks(range(grid.shape[0]), grid.index)
    ax.set_title(f"{metric} ({split})")
    fig.colorbar(image, ax=ax)
    return fig


def plot_sample_size_curve(curve: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Held-back site-classifier accuracy against training subjects per site, with its interval and chance.

    Parameters
    ----------
    curve : DataFrame
        From :func:`harmony.harmonize.benchmark.cells.sample_size_curve`, with a ``method`` column.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> curve = pd.DataFrame({"method": "combat", "n_train": [3, 10], "site_accuracy": [0.8, 0.4],
    ...                       "low": [0.7, 0.3], "high": [0.9, 0.5], "chance": 0.33})
    >>> plot_sample_size_curve(curve).axes[0].get_xscale()
    'log'
    """
    fig, ax = _axes(ax)
    for method, part in curve.groupby("method", sort=False):
        line, = ax.plot(part["n_train"], part["site_accuracy"], marker="o", label=method)
        ax.fill_between(part["n_train"], part["low"], part["high"], color=line.get_color(), alpha=0.2)
    ax.axhline(float(curve["chance"].mean()), color="grey", linestyle="--", label="chance 1/k")
    if "clean_accuracy" in curve and curve["clean_accuracy"].notna().any():
        ax.axhline(float(curve["clean_accuracy"].mean()), color="grey", linestyle=":",
                   label="the same subjects without scanner")
    ax.set_xscale("log")
    ax.set_xticks(sorted(curve["n_train"].unique()), [str(n) for n in sorted(curve["n_train"].unique())])
    ax.set_xlabel("training subjects per site")
    ax.set_ylabel("held-back site accuracy (balanced)")
    ax.legend()
    return fig


def render_benchmark_report(title: str, ranked: pd.DataFrame, recommendation: str, scores: pd.DataFrame,
                            figures_dir: str | os.PathLike, *, curve: pd.DataFrame | None = None,
                            needed: str | None = None, notes: list[str] | None = None) -> str:
    """The benchmark's self-contained HTML page: recommendation, ranked table, figures, curve.

    Parameters
    ----------
    title : str
    ranked : DataFrame
        The ranked table.
    recommendation : str
        Plain words (:func:`harmony.harmonize.benchmark.cells.recommend`).
    scores : DataFrame
        Tidy scores.
    figures_dir : str or path-like
        Folder the figures are also written to.
    curve : DataFrame, optional
        The sample-size curve (``like``).
    needed : str, optional
        The sentence on the subjects per site needed.
    notes : list of str, optional
        Further lines (what was not run, and why).

    Returns
    -------
    str
        The HTML page.
    """
    figures = _Figures(Path(figures_dir))
    numeric = [c for c in ranked.columns if c not in ("method",)]
    body = [f"<section><h2>Recommendation</h2><p>{_e(recommendation)}</p>",
            _read("Scores are on held-back subjects, simulated with known truth. Site accuracy is the balanced "
                  "accuracy of a cross-validated site classifier minus chance 1/k (0 = no site effect left); "
                  "AD is the fraction of features whose sites differ in distribution (Anderson-Darling, "
                  "p < 0.05); truth correlation is with each subject's features without a scanner; effect bias "
                  "is in SDs; the score is the mean normalised rank over cohorts and metrics (0 best)."),
            "</section>", "<section><h2>Ranked methods</h2>", _table(ranked, numeric),
            figures("ranked", plot_ranked(ranked), "Mean normalised rank per method", "ranked methods"),
            "</section>"]
    if curve is not None and not curve.empty:
        body += ["<section><h2>How many subjects per site</h2>", f"<p>{_e(needed or '')}</p>",
                 figures("sample_size", plot_sample_size_curve(curve),
                         "Held-back site accuracy against training subjects per site (95% bootstrap interval "
                         "over seeds)", "sample-size curve"), _table(curve, [c for c in curve.columns
                                                                            if c != "method"]), "</section>"]
    body.append("<section><h2>Per cohort</h2>")
    for metric in ("site_accuracy_excess", "ad_fraction", "truth_correlation", "covariance_left"):
        if ((scores["metric"] == metric) & (scores["split"] == "test")).any():
            body.append(figures(f"grid_{metric}", plot_metric_grid(scores, metric), f"{metric} on held-back subjects",
                                metric))
    body.append("</section>")
    if notes:
        body.append("<section><h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul></section>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{_e(title)}</h1></header><main>{''.join(body)}</main></body></html>")
