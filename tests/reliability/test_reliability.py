"""harmony.reliability against published values, pingouin, closed forms and invariants (the command: tests/cli)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pingouin
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from harmony.core import schema
from harmony.core.errors import ConfigError, SchemaError
from harmony.core.schema import (
    CASE_ID,
    CATEGORY,
    CI_HIGH,
    CI_LOW,
    ESTIMATE,
    FEATURE,
    ICC_METRICS,
    METRIC,
    N_CASES,
    N_VARIANTS,
    ORIGINAL,
    PERTURBATION,
    REASON,
    STABLE,
    VALUE,
    VARIANT_ID,
)
from harmony.reliability.agreement import ccc, icc
from harmony.reliability.settings import ALL, ICC_CATEGORIES, UNDEFINED
from harmony.reliability.table import pairwise_ccc, reliability_table
from harmony.reliability.verdicts import feature_verdicts, summary_counts
from harmony.workflows.experiment import load_experiment
from tests.conftest import perturbed_features, reference_path

# pingouin 0.7.0 calls DataFrame.dropna(inplace=True), deprecated in pandas 3.1
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.dropna")

T, R, Y = "target", "rater", "rating"


def long_table(x: np.ndarray) -> pd.DataFrame:
    """(targets, raters) or (features, targets, raters) array -> long format."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 2:
        x = x[None]
    f, t, r = np.meshgrid(*map(np.arange, x.shape), indexing="ij")
    return pd.DataFrame({FEATURE: f.ravel(), T: t.ravel(), R: r.ravel(), Y: x.ravel()})


def pingouin_icc(data: pd.DataFrame, targets: str = T, raters: str = R, ratings: str = Y) -> pd.DataFrame:
    """pingouin 0.7.0 with its CI95 column unrounded (it rounds to 2 decimals by default), indexed by form."""
    old = pingouin.options["round.column.CI95"]
    pingouin.options["round.column.CI95"] = None
    try:
        out = pingouin.intraclass_corr(data, targets=targets, raters=raters, ratings=ratings, nan_policy="omit")
    finally:
        pingouin.options["round.column.CI95"] = old
    return out.assign(low=[c[0] for c in out["CI95"]], high=[c[1] for c in out["CI95"]]).set_index("Type")


def reference_icc(x: np.ndarray, confidence: float = 0.95) -> dict[str, tuple[float, float, float]]:
    """Our own per-matrix implementation of McGraw & Wong (1996), Table 7, from sums of squares."""
    n, k = x.shape
    grand = x.mean()
    ss_total = ((x - grand) ** 2).sum()
    ss_r = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_c = n * ((x.mean(axis=0) - grand) ** 2).sum()
    msr, msc = ss_r / (n - 1), ss_c / (k - 1)
    mse = (ss_total - ss_r - ss_c) / ((n - 1) * (k - 1))
    msw = (ss_total - ss_r) / (n * (k - 1))
    a = 1 - confidence
    fq = lambda d1, d2: stats.f.ppf(1 - a / 2, d1, d2)  # noqa: E731
    out = {}
    # one-way random: ICC(1,1), ICC(1,k)
    fo = msr / msw
    fl, fu = fo / fq(n - 1, n * (k - 1)), fo * fq(n * (k - 1), n - 1)
    out["ICC(1,1)"] = ((msr - msw) / (msr + (k - 1) * msw), (fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1))
    out["ICC(1,k)"] = (1 - msw / msr, 1 - 1 / fl, 1 - 1 / fu)
    # consistency: ICC(C,1), ICC(C,k)
    fo = msr / mse
    fl, fu = fo / fq(n - 1, (n - 1) * (k - 1)), fo * fq((n - 1) * (k - 1), n - 1)
    out["ICC(C,1)"] = ((msr - mse) / (msr + (k - 1) * mse), (fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1))
    out["ICC(C,k)"] = (1 - mse / msr, 1 - 1 / fl, 1 - 1 / fu)
    # absolute agreement: ICC(A,1), ICC(A,k), with Satterthwaite's v
    p = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    fj = msc / mse
    v = ((n - 1) * (k - 1) * (k * p * fj + n * (1 + (k - 1) * p) - k * p) ** 2
         / ((n - 1) * k**2 * p**2 * fj**2 + (n * (1 + (k - 1) * p) - k * p) ** 2))
    fs, fi = fq(n - 1, v), fq(v, n - 1)
    low = n * (msr - fs * mse) / (fs * (k * msc + (k * n - k - n) * mse) + n * msr)
    high = n * (fi * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fi * msr)
    out["ICC(A,1)"] = (p, low, high)
    out["ICC(A,k)"] = ((msr - mse) / (msr + (msc - mse) / n), low * k / (1 + (k - 1) * low),
                       high * k / (1 + (k - 1) * high))
    return out


def random_matrix(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return (rng.normal(size=(n, 1)) * rng.uniform(0.3, 3) + rng.normal(scale=0.5, size=(1, k))
            + rng.normal(size=(n, k)))


# -- ICC against published values, pingouin and our own reference -------------------------------------

def test_shrout_fleiss_table2_to_published_two_decimals():
    data = pd.read_csv(reference_path("icc_reference", "shrout_fleiss_1979_table2.csv"))
    got = icc(data, "target", "judge", "rating").set_index(METRIC)[ESTIMATE].round(2)
    published = {"ICC(1,1)": 0.17, "ICC(A,1)": 0.29, "ICC(C,1)": 0.71,  # Shrout & Fleiss ICC(2,.) = A, (3,.) = C
                 "ICC(1,k)": 0.44, "ICC(A,k)": 0.62, "ICC(C,k)": 0.91}
    assert got.to_dict() == published


def test_wine_dataset_matches_pingouin():
    data = pingouin.read_dataset("icc")  # bundled with pingouin: no network
    ours = icc(data, "Wine", "Judge", "Scores").set_index(METRIC)
    theirs = pingouin_icc(data, "Wine", "Judge", "Scores")
    np.testing.assert_allclose(ours.loc[theirs.index, [ESTIMATE, CI_LOW, CI_HIGH]],
                               theirs[["ICC", "low", "high"]], atol=1e-10, rtol=0)
    matrix = data.pivot(index="Wine", columns="Judge", values="Scores").to_numpy(float)
    ref = reference_icc(matrix)
    np.testing.assert_allclose(ours.loc[list(ref), [ESTIMATE, CI_LOW, CI_HIGH]], list(ref.values()), atol=1e-10)


@pytest.mark.parametrize("n,k,seed", [(5, 2, 0), (12, 3, 1), (30, 7, 2), (8, 10, 3)])
def test_random_data_matches_pingouin_and_reference(n, k, seed):
    x = random_matrix(np.random.default_rng(seed), n, k)
    ours = icc(long_table(x)[[T, R, Y]], T, R, Y).set_index(METRIC)
    theirs = pingouin_icc(long_table(x))
    np.testing.assert_allclose(ours.loc[theirs.index, [ESTIMATE, CI_LOW, CI_HIGH]],
                               theirs[["ICC", "low", "high"]], atol=1e-10, rtol=0)
    ref = reference_icc(x)
    np.testing.assert_allclose(ours.loc[list(ref), [ESTIMATE, CI_LOW, CI_HIGH]], list(ref.values()), atol=1e-10)
    assert (ours[N_CASES] == n).all() and (ours[N_VARIANTS] == k).all() and (ours[REASON] == "").all()


def test_many_features_at_once_equal_one_at_a_time_with_missing_cases():
    rng = np.random.default_rng(4)
    x = np.stack([random_matrix(rng, 15, 4) * 10.0**e for e in (-3, 0, 5)])
    x[1, [2, 7], 1] = np.nan  # feature 1 lacks two tasks: computed on its 13 complete targets
    x[2, 0, 3] = np.nan
    ours = icc(long_table(x), T, R, Y, features=FEATURE, confidence=0.9)
    assert list(ours[FEATURE].drop_duplicates()) == [0, 1, 2]
    for f in range(3):
        one = ours[ours[FEATURE] == f].set_index(METRIC)
        complete = x[f][~np.isnan(x[f]).any(axis=1)]
        assert (one[N_CASES] == len(complete)).all()
        ref = reference_icc(complete, confidence=0.9)
        np.testing.assert_allclose(one.loc[list(ref), [ESTIMATE, CI_LOW, CI_HIGH]], list(ref.values()),
                                   atol=1e-10)
        theirs = pingouin_icc(long_table(x[f]))  # nan_policy="omit": listwise deletion, as ours
        np.testing.assert_allclose(one.loc[theirs.index, ESTIMATE], theirs["ICC"], atol=1e-10, rtol=0)


def test_degenerate_features_are_undefined_with_a_reason():
    rng = np.random.default_rng(5)
    x = np.stack([random_matrix(rng, 6, 3), np.full((6, 3), 2.5), random_matrix(rng, 6, 3)])
    x[2, 1:, 0] = np.nan  # one complete case left
    out = icc(long_table(x), T, R, Y, features=FEATURE).set_index(FEATURE)
    assert out.loc[0, ESTIMATE].notna().all() and (out.loc[0, REASON] == "").all()
    assert out.loc[1, ESTIMATE].isna().all() and out.loc[1, REASON].str.startswith("constant").all()
    assert out.loc[2, ESTIMATE].isna().all() and out.loc[2, REASON].str.contains("1 complete case").all()


def test_no_variation_between_cases_is_undefined_for_icc_and_ccc_but_not_cov():
    x = np.stack([np.tile([1.0, 1.0, 2.0], (6, 1)), random_matrix(np.random.default_rng(6), 6, 3)])
    out = icc(long_table(x), T, R, Y, features=FEATURE).set_index(FEATURE)
    assert out.loc[0, ESTIMATE].isna().all() and out.loc[0, REASON].str.startswith("no variation between cases").all()
    assert (out.loc[0, N_CASES] == 6).all() and (out.loc[1, REASON] == "").all()
    overall = ccc(long_table(x), T, R, Y, features=FEATURE, n_boot=100).set_index(FEATURE)
    assert np.isnan(overall.loc[0, ESTIMATE]) and overall.loc[0, REASON].startswith("no variation between cases")
    rows = pd.DataFrame([(f"c{c}", "s", v, 0, "flat_cases", x[0, c, r])
                         for r, v in enumerate([ORIGINAL, "a", "b"]) for c in range(6)], columns=schema.FEATURES.names)
    table = reliability_table(rows, bootstrap=100).set_index(METRIC)
    assert (table.loc[list(ICC_METRICS) + ["CCC"], CATEGORY] == UNDEFINED).all()
    assert table.loc["CoV", ESTIMATE] == pytest.approx(np.std([1, 1, 2], ddof=1) / (4 / 3))
    assert table.loc["CoV", CATEGORY] == "high"


def test_identical_raters_give_exactly_one_with_a_degenerate_interval():
    x = np.repeat(np.array([[1.0], [4.0], [2.0], [8.0]]), 3, axis=1)
    out = icc(long_table(x)[[T, R, Y]], T, R, Y)
    np.testing.assert_array_equal(out[[ESTIMATE, CI_LOW, CI_HIGH]], 1.0)


def test_bad_input_names_the_column():
    data = long_table(np.ones((3, 2)))
    with pytest.raises(SchemaError, match="'score'"):
        icc(data, T, R, "score")
    dup = pd.concat([data, data.iloc[:1]])
    with pytest.raises(SchemaError, match="more than one value for feature=0, target=0, rater=0"):
        icc(dup, T, R, Y, features=FEATURE)
    with pytest.raises(SchemaError, match="expected numbers, got 'x'"):
        icc(data.assign(**{Y: data[Y].astype(object).where(data[T] > 0, "x")}), T, R, Y)


# -- CCC ----------------------------------------------------------------------------------------------

def lin_ccc_reference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Lin (1989) closed form and his z-transform interval as DescTools::CCC writes it (moments over n)."""
    n = len(a)
    sxy = np.cov(a, b, bias=True)[0, 1]
    sa, sb = a.std(), b.std()
    p = 2 * sxy / (sa**2 + sb**2 + (a.mean() - b.mean()) ** 2)
    r = sxy / (sa * sb)
    u = (b.mean() - a.mean()) / np.sqrt(sa * sb)
    se = np.sqrt((((1 - r**2) * p**2) / ((1 - p**2) * r**2) + (2 * p**3 * (1 - p) * u**2 / (r * (1 - p**2) ** 2))
                  - (p**4 * u**4 / (2 * r**2 * (1 - p**2) ** 2))) / (n - 2))
    z, q = np.arctanh(p), stats.norm.ppf(0.5 + confidence / 2)
    return p, np.tanh(z - q * se), np.tanh(z + q * se)


def overall_ccc_reference(x: np.ndarray) -> float:
    """Barnhart, Haber & Song (2002), eq. (5), literally: pairwise covariances and mean differences."""
    j = x.shape[1]
    cov = np.cov(x, rowvar=False, bias=True)
    means = x.mean(axis=0)
    pairs = [(a, b) for a in range(j) for b in range(a + 1, j)]
    num = 2 * sum(cov[a, b] for a, b in pairs)
    den = (j - 1) * np.trace(cov) + sum((means[a] - means[b]) ** 2 for a, b in pairs)
    return num / den


def test_ccc_hand_worked_example():
    # x = 1, 2, 3 and y = 2, 3, 5: means 2 and 10/3; variances (over n) 2/3 and 14/9; covariance
    # ((-1)(-4/3) + 0 + (1)(5/3)) / 3 = 1; squared mean difference 16/9.
    # CCC = 2 * 1 / (2/3 + 14/9 + 16/9) = 2 / 4 = 0.5.
    data = pd.DataFrame({T: [0, 1, 2] * 2, R: ["x"] * 3 + ["y"] * 3, Y: [1, 2, 3, 2, 3, 5]})
    out = ccc(data, T, R, Y, reference="x")
    assert out[ESTIMATE].iloc[0] == pytest.approx(0.5, abs=1e-15)
    assert out[R].tolist() == ["y"] and out[N_CASES].tolist() == [3]


@pytest.mark.parametrize("seed", range(3))
def test_pairwise_ccc_matches_closed_form_and_lin_interval(seed):
    rng = np.random.default_rng(seed)
    x = random_matrix(rng, 20, 3) + np.array([0, 0.3, -1.0])
    out = ccc(long_table(x)[[T, R, Y]], T, R, Y, reference=0, confidence=0.9).set_index(R)
    for r in (1, 2):
        np.testing.assert_allclose(out.loc[r, [ESTIMATE, CI_LOW, CI_HIGH]],
                                   lin_ccc_reference(x[:, 0], x[:, r], 0.9), atol=1e-12)


def test_overall_ccc_matches_barnhart_and_reduces_to_lin_for_two():
    rng = np.random.default_rng(7)
    x = random_matrix(rng, 25, 4)
    out = ccc(long_table(x)[[T, R, Y]], T, R, Y, n_boot=200, rng=np.random.default_rng(0))
    assert out[ESTIMATE].iloc[0] == pytest.approx(overall_ccc_reference(x), abs=1e-12)
    assert out[CI_LOW].iloc[0] < out[ESTIMATE].iloc[0] < out[CI_HIGH].iloc[0]
    two = ccc(long_table(x[:, :2])[[T, R, Y]], T, R, Y, n_boot=200)
    assert two[ESTIMATE].iloc[0] == pytest.approx(lin_ccc_reference(x[:, 0], x[:, 1])[0], abs=1e-12)


def test_overall_ccc_bootstrap_is_the_percentile_interval_of_explicit_resamples():
    rng = np.random.default_rng(8)
    x = random_matrix(rng, 12, 3)
    out = ccc(long_table(x)[[T, R, Y]], T, R, Y, n_boot=300, confidence=0.8, rng=np.random.default_rng(42))
    draws = np.random.default_rng(42).integers(0, 12, size=(300, 12))
    boot = np.array([overall_ccc_reference(x[d]) for d in draws])
    np.testing.assert_allclose(out[[CI_LOW, CI_HIGH]].iloc[0], np.nanquantile(boot, [0.1, 0.9]), atol=1e-10)
    again = ccc(long_table(x)[[T, R, Y]], T, R, Y, n_boot=300, confidence=0.8, rng=np.random.default_rng(42))
    pd.testing.assert_frame_equal(out, again)


# -- invariants -----------------------------------------------------------------------------------------

matrices = st.tuples(st.integers(3, 8), st.integers(2, 5), st.integers(0, 2**32 - 1)).map(
    lambda t: np.random.default_rng(t[2]).integers(-40, 41, size=(t[0], t[1])) / 4.0)


@settings(deadline=None, max_examples=40)
@given(matrices)
def test_icc_at_most_one_and_shift_invariant(x):
    assume(not (x == x[0]).all())  # constant, or no variation between targets: undefined (tested above)
    out = icc(long_table(x)[[T, R, Y]], T, R, Y)
    defined = out[REASON] == ""
    assert defined.sum() >= 5  # only ICC(A,k) can lack a value (agreement far below chance), with a reason
    assert (out.loc[defined, ESTIMATE] <= 1 + 1e-12).all() and (out.loc[defined, CI_HIGH] <= 1 + 1e-12).all()
    assert out.loc[~defined, ESTIMATE].isna().all() and (out.loc[~defined, METRIC] == "ICC(A,k)").all()
    shifted = icc(long_table(x + 1234.5)[[T, R, Y]], T, R, Y)
    np.testing.assert_allclose(shifted[ESTIMATE], out[ESTIMATE], atol=1e-8)


@settings(deadline=None, max_examples=25)
@given(st.lists(st.integers(-50, 50), min_size=3, max_size=10, unique=True), st.integers(2, 5))
def test_feature_identical_across_raters_has_icc_one(targets, k):
    x = np.repeat(np.array(targets, dtype=float)[:, None] / 3, k, axis=1)
    out = icc(long_table(x)[[T, R, Y]], T, R, Y)
    np.testing.assert_allclose(out[[ESTIMATE, CI_LOW, CI_HIGH]], 1.0, atol=1e-6)


@settings(deadline=None, max_examples=30)
@given(st.integers(0, 2**32 - 1), st.integers(4, 12))
def test_ccc_symmetric_and_one_for_identical_series(seed, n):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(n, 2)) * 4) / 4 + [0, rng.normal()]
    assume((x.max(axis=0) > x.min(axis=0)).all())  # a constant series has no CCC
    data = long_table(x)[[T, R, Y]]
    ab = ccc(data, T, R, Y, reference=0)[[ESTIMATE, CI_LOW, CI_HIGH]]
    ba = ccc(data, T, R, Y, reference=1)[[ESTIMATE, CI_LOW, CI_HIGH]]
    np.testing.assert_allclose(ab, ba, atol=1e-12)
    same = long_table(np.column_stack([x[:, 0], x[:, 0]]))[[T, R, Y]]
    np.testing.assert_array_equal(ccc(same, T, R, Y, reference=0)[[ESTIMATE, CI_LOW, CI_HIGH]], 1.0)


# -- the features table ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    features, variants = perturbed_features()
    return reliability_table(features, variants, bootstrap=200)


def test_reliability_table_groups_and_counts(table):
    assert list(dict.fromkeys(table[PERTURBATION])) == ["discretisation", "mask", "noise", "mask+noise", "all"]
    assert set(table[METRIC]) == set(schema.RELIABILITY_METRICS)
    per_group = table.groupby(PERTURBATION)[N_VARIANTS].first()
    assert per_group.to_dict() == {"discretisation": 2, "mask": 2, "noise": 3, "mask+noise": 2, "all": 6}
    gappy = table[(table[FEATURE] == "gappy") & table[METRIC].isin(ICC_METRICS)].groupby(PERTURBATION)[N_CASES]
    assert gappy.first().to_dict() == {"discretisation": 20, "mask": 15, "noise": 20, "mask+noise": 20, "all": 15}


def test_never_a_silent_nan(table):
    undefined = table[CATEGORY] == UNDEFINED
    assert not table.loc[~undefined, ESTIMATE].isna().any()
    assert (table.loc[undefined, REASON].str.len() > 0).all() and not table.loc[undefined, STABLE].any()
    flat = table[table[FEATURE] == "flat"]
    assert (flat[CATEGORY] == UNDEFINED).all()
    assert flat[REASON].str.contains("constant").all()


def test_categories_follow_koo_and_li_on_the_lower_bound(table):
    rows = table[table[METRIC].isin(ICC_METRICS) & (table[CATEGORY] != UNDEFINED)]
    expected = pd.cut(rows[CI_LOW], [-np.inf, 0.5, 0.75, 0.9, np.inf], right=False,
                      labels=list(ICC_CATEGORIES)).astype(str)
    assert (rows[CATEGORY] == expected).all()
    assert (rows[STABLE] == (rows[CI_LOW] >= 0.75)).all()
    noisy = table[(table[FEATURE] == "noisy") & (table[METRIC] == "ICC(A,1)")].set_index(PERTURBATION)
    assert noisy.loc["noise", CATEGORY] == "poor" and noisy.loc["discretisation", CATEGORY] == "excellent"
    assert noisy.loc["noise", REASON].startswith("ICC(A,1) lower bound ") and "< 0.75 under noise" in \
        noisy.loc["noise", REASON]


def test_judge_on_estimate_and_thresholds_are_configurable():
    features, variants = perturbed_features()
    loose = reliability_table(features, variants, bootstrap=100, judge_on="estimate", icc="ICC(C,1)",
                              icc_thresholds=[0.1, 0.2, 0.3])
    rows = loose[(loose[METRIC] == "ICC(C,1)") & (loose[CATEGORY] != UNDEFINED)]
    expected = pd.cut(rows[ESTIMATE], [-np.inf, 0.1, 0.2, 0.3, np.inf], right=False,
                      labels=list(ICC_CATEGORIES)).astype(str)
    assert (rows[CATEGORY] == expected).all()
    with pytest.raises(ConfigError, match="reliability.icc_thresholds: expected three increasing"):
        reliability_table(features, variants, icc_thresholds=[0.9, 0.5, 0.7])
    with pytest.raises(ConfigError, match="reliability.icc: must be one of"):
        reliability_table(features, variants, icc="ICC(2,1)")


def test_verdicts_name_the_perturbation_that_breaks_a_feature(table):
    verdicts = feature_verdicts(table).set_index(FEATURE)
    assert verdicts[STABLE].to_dict() == {"flat": False, "gappy": True, "noisy": False, "steady": True}
    noisy = table[(table[FEATURE] == "noisy") & (table[METRIC] == "ICC(A,1)") & (table[PERTURBATION] != "all")]
    worst = noisy.loc[noisy[CI_LOW].idxmin(), PERTURBATION]
    assert worst in {"noise", "mask+noise"} and verdicts.loc["noisy", "worst_perturbation"] == worst
    assert verdicts.loc["noisy", REASON].startswith("ICC(A,1) lower bound ")
    assert verdicts.loc["noisy", REASON].endswith(f"< 0.75 under {worst}; 2 more check(s) fail")
    assert "constant" in verdicts.loc["flat", REASON]
    assert verdicts.loc["steady", REASON].startswith("all 5 check(s) pass")
    both = feature_verdicts(table, verdict=["icc", "ccc"]).set_index(FEATURE)
    assert both.loc["steady", REASON].startswith("all 10 check(s) pass")
    counts = summary_counts(table)
    assert counts.loc["noise", "poor"] == 1 and counts.loc["noise", UNDEFINED] == 1
    assert counts.loc["discretisation", STABLE] == 3


def test_repeats_fold_into_raters_and_pairwise_ccc():
    features, variants = perturbed_features(n_cases=10, repeats=2)
    table = reliability_table(features, variants, bootstrap=100)
    assert table.groupby(PERTURBATION)[N_VARIANTS].first().to_dict() == {
        "discretisation": 3, "mask": 3, "noise": 5, "mask+noise": 3, "all": 11}
    pairs = pairwise_ccc(features, variants)
    assert len(pairs) == 4 * 10 and set(pairs[schema.REPEAT]) == {0, 1}
    steady = pairs[pairs[FEATURE] == "steady"]
    assert (steady[ESTIMATE] > 0.99).all() and (steady[CATEGORY] != UNDEFINED).all()
    one = features[(features[FEATURE] == "noisy")]
    wide = one.pivot_table(index=CASE_ID, columns=[VARIANT_ID, schema.REPEAT], values=VALUE)
    row = pairs[(pairs[FEATURE] == "noisy") & (pairs[VARIANT_ID] == "n2") & (pairs[schema.REPEAT] == 1)].iloc[0]
    ref = lin_ccc_reference(wide[(ORIGINAL, 0)].to_numpy(), wide[("n2", 1)].to_numpy())
    np.testing.assert_allclose(row[[ESTIMATE, CI_LOW, CI_HIGH]].astype(float), ref, atol=1e-12)


def test_bad_tables_are_named():
    features, variants = perturbed_features(n_cases=5)
    with pytest.raises(SchemaError, match="no row for variant_id 'nm'"):
        reliability_table(features, variants[variants[VARIANT_ID] != "nm"])
    with pytest.raises(SchemaError, match="no rows with variant_id 'original'"):
        reliability_table(features[features[VARIANT_ID] != ORIGINAL], variants)


def test_without_variants_every_variant_is_one_kind():
    features, _ = perturbed_features(n_cases=6)
    table = reliability_table(features, bootstrap=100)
    assert set(table[PERTURBATION]) == {ALL}


def test_experiment_config_carries_the_reliability_section(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[reliability]\nicc = "ICC(C,k)"\njudge_on = "estimate"\n')
    config = load_experiment(path, ["reliability.icc_min=0.8"])
    assert config["reliability"]["icc"] == "ICC(C,k)" and config["reliability"]["icc_min"] == 0.8
    assert config["reliability"]["bootstrap"] == 1000
    path.write_text('[reliability]\niccc = "ICC(C,k)"\n')
    with pytest.raises(ConfigError, match="reliability.iccc: unknown key"):
        load_experiment(path)


def test_run_reliability_reads_only_the_columns_it_needs(tmp_path, monkeypatch):
    from harmony.workflows.assess import run_reliability

    features, variants = perturbed_features(n_cases=8)
    features.to_parquet(tmp_path / "features.parquet", index=False)
    variants.to_parquet(tmp_path / "variants.parquet", index=False)
    asked = []
    read_parquet = pd.read_parquet
    monkeypatch.setattr(pd, "read_parquet", lambda path, **kw: asked.append((path.name, kw.get("columns")))
                        or read_parquet(path, **kw))
    results = run_reliability(tmp_path / "features.parquet", tmp_path / "out", settings={"bootstrap": 100})
    assert ("features.parquet", [schema.CASE_ID, schema.VARIANT_ID, schema.REPEAT, schema.FEATURE,
                                 schema.VALUE]) in asked
    assert schema.SITE not in [c for name, cols in asked if name == "features.parquet" for c in cols]
    whole = reliability_table(features, variants, bootstrap=100, rng=np.random.default_rng(0))
    pd.testing.assert_frame_equal(results["reliability"], whole)
