"""Guards on small or mixed studies, and intervals that respect their statistic's range."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.core import schema
from harmony.core.errors import StudyError
from harmony.core.notices import collect_warnings
from harmony.reliability.agreement import icc
from harmony.reliability.guards import expected_icc_interval
from harmony.reliability.settings import COV, RANGE, resolve_settings
from harmony.reliability.table import reliability_table
from tests.conftest import perturbed_features


def _study(n_cases: int, seed: int = 0, n_variants: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=n_cases) * 10 + 50
    ids = ["original"] + [f"v{i}" for i in range(n_variants)]
    rows = [(f"c{c}", "s", v, 0, f, truth[c] * (1 + j) + rng.normal())
            for v in ids for c in range(n_cases) for j, f in enumerate(("a", "b"))]
    variants = pd.DataFrame({schema.VARIANT_ID: ids, schema.KIND: ["original"] + ["noise"] * n_variants,
                             schema.PARAMS: "[]", schema.SEED: 0})
    return pd.DataFrame(rows, columns=schema.FEATURES.names), variants


@pytest.mark.parametrize("n_cases", [1, 2])
def test_a_one_or_two_case_study_is_refused_with_the_setting_that_lowers_the_guard(n_cases):
    features, variants = _study(n_cases)
    with pytest.raises(StudyError, match=rf"reliability: {n_cases} cases? .*needs >= 3 \(reliability.min_cases\).*"
                                         r"Koo & Li \(2016\) recommend >= 30.*--set reliability.min_cases=N"):
        reliability_table(features, variants, bootstrap=100)


def test_with_the_guard_lowered_two_cases_run_with_a_loud_warning_stating_the_interval_width():
    features, variants = _study(2)
    with collect_warnings() as log:
        table = reliability_table(features, variants, bootstrap=100, min_cases=2)
    assert log.lines()[0].startswith("GUARD LOWERED: reliability on 2 cases (reliability.min_cases=2)")
    assert "an ICC of 0.90 has a 95% interval of about [-0.10, 1.00] (width 1.10)" in log.lines()[0]
    assert (table[schema.N_CASES] <= 2).all() and len(table)


def test_below_the_recommendation_a_warning_states_the_width_it_implies():
    features, variants = _study(12, n_variants=1)
    with collect_warnings() as log:
        reliability_table(features, variants, bootstrap=100)
    low, high = expected_icc_interval(12, 2)
    first, conditions = log.lines()
    assert first.startswith("only 12 cases for reliability")
    assert f"[{low:.2f}, {high:.2f}] (width {high - low:.2f})" in first and "Koo & Li (2016)" in first
    assert conditions.startswith("perturbation group(s) all, noise have fewer than 3 conditions")


def test_icc_refuses_fewer_cases_than_its_floor_as_ccc_does():
    data = pd.DataFrame({"t": [0, 1, 0, 1], "r": ["a", "a", "b", "b"], "y": [1.0, 5.0, 1.2, 5.1]})
    table = icc(data, "t", "r", "y")
    assert table[schema.ESTIMATE].isna().all()
    assert (table[schema.REASON] == "2 complete case(s); needs >= 3").all()
    assert icc(data, "t", "r", "y", min_cases=2)[schema.ESTIMATE].notna().all()


def test_expected_interval_is_the_f_interval_icc_gives_an_observed_icc_c1():
    rng = np.random.default_rng(3)
    n, k = 15, 4
    x = rng.normal(size=(n, 1)) * 2 + rng.normal(size=(n, k))
    data = pd.DataFrame([(t, r, x[t, r]) for t in range(n) for r in range(k)], columns=["t", "r", "y"])
    row = icc(data, "t", "r", "y").set_index(schema.METRIC).loc["ICC(C,1)"]
    np.testing.assert_allclose(expected_icc_interval(n, k, row[schema.ESTIMATE]), (row[schema.CI_LOW],
                                                                                    row[schema.CI_HIGH]), rtol=1e-10)


def test_cases_of_several_modalities_are_flagged():
    features, variants = _study(4)
    cases = pd.DataFrame({schema.CASE_ID: [f"c{i}" for i in range(4)], "modality": ["CT", "ct", "MR", "CT"]})
    with collect_warnings() as log:
        reliability_table(features, variants, bootstrap=100, cases=cases)
    assert any(line.startswith("cases of 2 modalities in one reliability analysis (CT: 3 cases, MR: 1 case)")
               for line in log.lines())


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n_cases=st.integers(3, 9), scale=st.sampled_from([1e-3, 1.0, 1e6]),
       spread=st.floats(0.0, 3.0))
def test_every_interval_respects_its_statistics_range(seed, n_cases, scale, spread):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=n_cases) * spread + rng.uniform(-1, 1)  # means near 0: CoV can be large
    rows = [(f"c{c}", "s", v, 0, "f", scale * (truth[c] + rng.normal()))
            for v in ("original", "v1", "v2") for c in range(n_cases)]
    features = pd.DataFrame(rows, columns=schema.FEATURES.names)
    with collect_warnings():
        table = reliability_table(features, bootstrap=100, min_cases=3)
    iccs = table[table[schema.METRIC].isin(schema.ICC_METRICS)]
    for column in (schema.ESTIMATE, schema.CI_LOW, schema.CI_HIGH):
        values = iccs[column].to_numpy()
        assert (values[np.isfinite(values)] <= 1 + 1e-12).all(), column
    ccc = table[table[schema.METRIC] == "CCC"]
    values = ccc[[schema.ESTIMATE, schema.CI_LOW, schema.CI_HIGH]].to_numpy().ravel()
    assert (np.abs(values[np.isfinite(values)]) <= 1 + 1e-12).all()
    for metric in (COV, RANGE):
        rows_ = table[table[schema.METRIC] == metric]
        low, est, high = (rows_[c].to_numpy() for c in (schema.CI_LOW, schema.ESTIMATE, schema.CI_HIGH))
        ok = np.isfinite(est)
        assert (low[ok] >= 0).all() and (low[ok] <= est[ok] + 1e-12).all() and (est[ok] <= high[ok] + 1e-12).all()


def test_the_cov_interval_is_the_log_scale_interval_of_the_mean():
    features, variants = perturbed_features(n_cases=8)
    with collect_warnings():
        table = reliability_table(features, variants, bootstrap=100)
    row = table[(table[schema.METRIC] == COV) & (table[schema.FEATURE] == "noisy")
                & (table[schema.PERTURBATION] == "noise")].iloc[0]
    wide = features[(features[schema.FEATURE] == "noisy")
                    & features[schema.VARIANT_ID].isin(["original", "n1", "n2"])].pivot(
        index=schema.CASE_ID, columns=schema.VARIANT_ID, values=schema.VALUE).to_numpy()
    per_case = wide.std(axis=1, ddof=1) / np.abs(wide.mean(axis=1))
    m, sem = per_case.mean(), per_case.std(ddof=1) / np.sqrt(len(per_case))
    from scipy import stats

    factor = np.exp(stats.t.ppf(0.975, len(per_case) - 1) * sem / m)
    np.testing.assert_allclose([row[schema.ESTIMATE], row[schema.CI_LOW], row[schema.CI_HIGH]],
                               [m, m / factor, m * factor], rtol=1e-10)
    assert resolve_settings()["min_cases"] == 3 and resolve_settings()["recommended_cases"] == 30
