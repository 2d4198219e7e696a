"""Distribution-aware harmonization: the per-feature transforms and what they buy on skewed features."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from harmony.core.errors import HarmonyError
from harmony.harmonize.combat import ComBat
from harmony.harmonize.features import harmonization_inputs
from harmony.harmonize.metrics import site_effects
from harmony.harmonize.simulation import simulate_site_features
from harmony.harmonize.transforms import (
    QuantileNormal,
    TransformError,
    YeoJohnson,
    make_transform,
    transform_from_dict,
)


def test_yeo_johnson_matches_scipy_lambda_and_transform():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.lognormal(size=300), -rng.lognormal(size=300), rng.normal(size=300) * 5])
    t = YeoJohnson().fit(X, ["a", "b", "c"])
    for j in range(3):
        assert t.lambdas[j] == pytest.approx(stats.yeojohnson_normmax(X[:, j]), rel=1e-12)
        np.testing.assert_allclose(t.forward(X)[:, j], stats.yeojohnson(X[:, j], t.lambdas[j]), rtol=1e-12)
    np.testing.assert_allclose(t.inverse(t.forward(X)), X, rtol=1e-10, atol=1e-12)
    assert t.lambdas[0] < 1 < t.lambdas[1]  # right skew pulled in, left skew pushed out


@pytest.mark.parametrize("lam", [0.0, 2.0, -0.5, 2.5, 1.0])
def test_yeo_johnson_inverse_at_special_lambdas(lam):
    x = np.linspace(-3, 3, 61)[:, None]
    t = YeoJohnson([lam], [-3.0], [3.0])
    np.testing.assert_allclose(t.forward(x)[:, 0], stats.yeojohnson(x[:, 0], lam), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(t.inverse(t.forward(x)), x, rtol=1e-10, atol=1e-12)


def test_yeo_johnson_values_beyond_the_invertible_range_go_to_training_extremes():
    t = YeoJohnson([-0.5], [0.0], [40.0])  # forward range for x >= 0 is [0, 2)
    with pytest.warns(RuntimeWarning, match="1 harmonized value"):
        out = t.inverse(np.array([[1.0], [2.5]]))
    assert out[0, 0] == pytest.approx(3.0) and out[1, 0] == 40.0


def test_quantile_normal_is_monotone_invertible_and_normal_on_training_data():
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.exponential(size=400), rng.integers(0, 8, 400).astype(float)])
    t = QuantileNormal().fit(X, ["cont", "discrete"])
    Z = t.forward(X)
    assert stats.shapiro(Z[:, 0]).pvalue > 0.01
    np.testing.assert_allclose(t.inverse(Z), X, atol=1e-10)
    grid = np.linspace(-1, 12, 500)[:, None].repeat(2, axis=1)  # including values beyond the training range
    assert (np.diff(t.forward(grid), axis=0) > 0).all()
    np.testing.assert_allclose(t.inverse(t.forward(grid)), grid, atol=1e-9)
    assert t.scores[0][0] == pytest.approx(special.ndtri(0.5 / 400))
    with pytest.raises(TransformError, match="feature 'flat' has a single distinct quantile"):
        QuantileNormal().fit(np.r_[np.zeros(2000), 1.0][:, None], ["flat"])


def test_log_needs_positive_values_naming_the_feature_at_fit_and_transform():
    rng = np.random.default_rng(2)
    X = rng.lognormal(size=(40, 3))
    site = np.repeat(["a", "b"], 20)
    bad = X.copy()
    bad[7, 2] = -1.0
    with pytest.raises(TransformError, match=r"feature 'column 2' is -1.0 in sample row 7"):
        ComBat(feature_transform="log").fit(bad, batch=site)
    model = ComBat(feature_transform="log").fit(X, batch=site)
    with pytest.raises(TransformError, match=r"feature 'column 2' is -1.0 in sample row 7"):
        model.transform(bad, batch=site)
    assert issubclass(TransformError, HarmonyError)  # the CLI turns it into one line and exit code 2


@pytest.mark.parametrize("name", ["log", "yeo-johnson", "quantile-normal"])
def test_transforms_serialise_exactly(name):
    X = np.random.default_rng(3).lognormal(size=(50, 4))
    t = make_transform(name).fit(X, list("abcd"))
    again = transform_from_dict(t.to_dict())
    np.testing.assert_array_equal(again.forward(X, list("abcd")), t.forward(X, list("abcd")))
    with pytest.raises(TransformError, match="transform must be None or one of"):
        make_transform("box-cox")


def test_transformed_combat_aligns_sites_on_the_transformed_scale():
    rng = np.random.default_rng(4)
    site = np.repeat(["a", "b", "c"], 60)
    X = np.exp(rng.normal(size=(180, 6)) * np.where(site == "b", 1.5, 0.7)[:, None] + (site == "c")[:, None])
    Y = ComBat(feature_transform="log", eb=False).fit_transform(X, batch=site)
    logs = np.log(Y)
    for s in "bc":
        np.testing.assert_allclose(logs[site == s].mean(axis=0), logs[site == "a"].mean(axis=0), atol=1e-8)
        np.testing.assert_allclose(logs[site == s].std(axis=0), logs[site == "a"].std(axis=0), rtol=1e-8)
    assert (Y > 0).all()


def test_a_transform_lowers_the_distribution_site_effect_where_plain_combat_raises_it():
    """Skewed features with site-specific shape: plain ComBat moves medians apart, a transform does not."""
    cases, features = simulate_site_features(n_cases=240, n_features=30, skewed=True, rng=np.random.default_rng(5))
    _, X, site, _ = harmonization_inputs(features, cases)

    def fraction(values):
        long = values.rename_axis(index="case_id", columns="feature").stack().rename("value").reset_index()
        long["site"] = long["case_id"].map(site)
        return site_effects(long).groupby("test")["significant"].mean()

    raw, plain = fraction(X), fraction(ComBat().fit_transform(X, batch=site))
    assert plain["kruskal_wallis"] > raw["kruskal_wallis"] + 0.05
    assert plain["welch_anova"] < 0.1 < raw["welch_anova"]  # means aligned: the effect moved to the medians
    for name in ("log", "yeo-johnson", "quantile-normal"):
        after = fraction(ComBat(feature_transform=name).fit_transform(X, batch=site))
        assert after["kruskal_wallis"] < plain["kruskal_wallis"], name
        assert after["anderson_darling"] < plain["anderson_darling"] / 2, name
        assert after["kruskal_wallis"] <= raw["kruskal_wallis"] + 0.05, name
