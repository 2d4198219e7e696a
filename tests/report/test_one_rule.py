"""One rule everywhere: the figures' bands and points, the category counts and the stable flags read one column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import Rectangle

from harmony.core import schema
from harmony.core.notices import collect_warnings
from harmony.reliability.settings import resolve_settings
from harmony.reliability.table import reliability_table
from harmony.reliability.verdicts import category_bands, judged_values, summary_counts
from harmony.report.figures import _kinds_of, heatmap_features, plot_icc_distribution
from tests.conftest import perturbed_features

METRIC = "ICC(A,1)"


@pytest.fixture(scope="module")
def table():
    features, variants = perturbed_features(n_cases=15, seed=4)
    rng = np.random.default_rng(0)
    # more features, of every reliability, so that every band holds some points
    extra = features[features[schema.FEATURE] == "steady"]
    frames = [features]
    for i, noise in enumerate(np.linspace(0.5, 12.0, 16)):
        frames.append(extra.assign(**{schema.FEATURE: f"mixed{i:02d}",
                                      schema.VALUE: extra[schema.VALUE] + noise * rng.normal(size=len(extra))
                                      * (extra[schema.VARIANT_ID] != schema.ORIGINAL)}))
    with collect_warnings():
        return reliability_table(pd.concat(frames, ignore_index=True), variants, bootstrap=100)


@pytest.mark.parametrize("judge_on", ["ci_low", "estimate"])
def test_bands_points_counts_and_flags_come_from_the_same_column(table, judge_on):
    settings = resolve_settings(judge_on=judge_on)
    rows = table[table[schema.METRIC] == METRIC]
    judged = judged_values(rows, settings)
    column = schema.CI_LOW if judge_on == "ci_low" else schema.ESTIMATE
    # the quantity is the configured column (the estimate only where the bound is undefined)
    np.testing.assert_array_equal(judged, rows[column].where(rows[column].notna(), rows[schema.ESTIMATE]))
    # the flags: judged >= icc_min
    flags = judged >= settings["icc_min"]
    if judge_on == "ci_low":  # the table was computed with the default rule
        np.testing.assert_array_equal(rows[schema.STABLE].to_numpy(), flags.to_numpy() & rows[schema.CATEGORY].ne(
            "undefined").to_numpy())
    # the figure: per kind, its points are the judged values, and the bands are the category thresholds
    fig = plot_icc_distribution(table, METRIC, settings=settings)
    ax = fig.axes[0]
    kinds = _kinds_of(rows)
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points) == len(kinds)
    bands = category_bands(METRIC, settings)
    counted = pd.DataFrame(0, index=kinds, columns=[name for *_, name in bands])
    for kind, scatter in zip(kinds, points):
        shown = np.sort(scatter.get_offsets()[:, 0])
        expected = np.sort(judged[(rows[schema.PERTURBATION] == kind).to_numpy()].dropna().to_numpy())
        np.testing.assert_allclose(shown, expected)
        for low, high, name in bands:
            counted.loc[kind, name] = int(((shown >= low) & (shown < high)).sum() + (shown == 1.0).sum() * (high == 1))
    # the band edges (the first band starts at the axis' left edge)
    spans = sorted(round(p.get_x(), 6) for p in ax.patches if isinstance(p, Rectangle))[1:]
    assert spans == [round(t, 6) for t in settings["icc_thresholds"]]
    # the category table counts the same points in the same bands (for the rule the table was judged by)
    if judge_on == "ci_low":
        counts = summary_counts(table, settings).reindex(kinds)
        pd.testing.assert_frame_equal(counts[counted.columns], counted, check_names=False, check_dtype=False)
    # the heatmap shows the same value
    matrix, _ = heatmap_features(table, METRIC, settings=settings)
    for (feature, kind), value in matrix.stack().items():
        sel = (rows[schema.FEATURE] == feature) & (rows[schema.PERTURBATION] == kind)
        np.testing.assert_allclose(value, judged[sel].iloc[0])
    assert ("lower bound" in ax.get_xlabel()) is (judge_on == "ci_low")


def test_estimate_rule_recomputed_agrees_with_its_figure(table):
    """With judge_on = estimate the table itself is judged on estimates: counts and flags follow the figure."""
    features, variants = perturbed_features(n_cases=15, seed=4)
    with collect_warnings():
        loose = reliability_table(features, variants, bootstrap=100, judge_on="estimate")
    settings = resolve_settings(judge_on="estimate")
    rows = loose[loose[schema.METRIC] == METRIC]
    judged = judged_values(rows, settings)
    defined = rows[schema.CATEGORY] != "undefined"
    np.testing.assert_array_equal(rows.loc[defined, schema.STABLE], judged[defined] >= settings["icc_min"])
    counts = summary_counts(loose, settings)
    for kind, group in rows[defined].groupby(schema.PERTURBATION):
        values = judged[group.index]
        assert counts.loc[kind, "excellent"] == int((values >= 0.9).sum())
        assert counts.loc[kind, "poor"] == int((values < 0.5).sum())


def test_the_fixture_fills_every_band(table):
    counts = summary_counts(table)
    assert (counts[["poor", "moderate", "good", "excellent"]].sum() > 0).all()
