"""ComBat-GAM: neuroHarmonize 2.5.2's outputs, statsmodels' basis, penalty and cross-validation, the contract,
and a nonlinear age effect kept where linear ComBat distorts it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from statsmodels.gam.api import BSplines, GLMGam
from statsmodels.gam.gam_cross_validation.gam_cross_validation import (
    MultivariateGAMCVPath,
)

from harmony.harmonize.combat import ComBat
from harmony.harmonize.gam import ALPHA_GRID, GAM_MODEL_FORMAT, ComBatGAM
from harmony.harmonize.inputs import HarmonizationError
from harmony.harmonize.splines import spline_basis, spline_knots, spline_penalty
from tests.conftest import reference_path

FEATURES = [f"f{j}" for j in range(6)]


@pytest.fixture(scope="module")
def neuroharmonize():
    folder = reference_path("neuroharmonize")
    return folder, pd.read_csv(folder / "train.csv"), pd.read_csv(folder / "test.csv")


@pytest.mark.parametrize("case,ref", [("gam", None), ("gam_ref", "site2")])
def test_reproduces_neuroharmonize_learn_and_apply(neuroharmonize, case, ref):
    """With neuroHarmonize's own penalties, harmonizationLearn and harmonizationApply agree to 1e-10."""
    folder, train, test = neuroharmonize
    alpha = pd.read_csv(folder / f"{case}_alpha.csv")["alpha"].tolist()
    model = ComBatGAM(smooth={"age": {"alpha": alpha}}, ref_batch=ref)
    got = model.fit_transform(train[FEATURES], batch=train.SITE, covariates=train[["age", "sex"]])
    np.testing.assert_allclose(got.to_numpy(), pd.read_csv(folder / f"{case}_train.csv").to_numpy(), rtol=0, atol=1e-10)
    applied = model.transform(test[FEATURES], batch=test.SITE, covariates=test[["age", "sex"]])
    np.testing.assert_allclose(applied.to_numpy(), pd.read_csv(folder / f"{case}_test.csv").to_numpy(), rtol=0,
                               atol=1e-10)
    linear = ComBat(ref_batch=ref).fit_transform(train[FEATURES], batch=train.SITE, covariates=train[["age", "sex"]])
    assert np.abs(linear.to_numpy() - got.to_numpy()).max() > 0.05  # the smooth term mattered


def test_basis_and_penalty_are_statsmodels_bsplines():
    x = np.random.default_rng(1).uniform(20, 85, 200)
    smoother = BSplines(x[:, None], df=8, degree=3, knot_kwds=[{"lower_bound": 10.0, "upper_bound": 90.0}])
    knots = spline_knots(x, 8, 3, (10.0, 90.0))
    np.testing.assert_array_equal(knots, smoother.smoothers[0].knots)
    np.testing.assert_allclose(spline_basis(x, knots, 3), smoother.basis, rtol=0, atol=1e-14)
    np.testing.assert_allclose(spline_penalty(knots, 3), smoother.smoothers[0].cov_der2, rtol=1e-12, atol=1e-14)


class _Folds:
    """statsmodels' cross-validation iterator interface over fixed folds."""

    def __init__(self, folds, n):
        self.folds, self.n = folds, n

    def split(self, *args, **kwargs):
        for test in self.folds:
            mask = np.zeros(self.n, bool)
            mask[test] = True
            yield ~mask, mask


def test_penalty_choice_is_statsmodels_cross_validation_on_the_same_folds(neuroharmonize):
    """Given the same folds, the penalty chosen per feature is select_penweight_kfold's (same grid and cost)."""
    _, train, _ = neuroharmonize
    train = train.sort_values("SITE", kind="stable").reset_index(drop=True)  # rows already grouped by batch
    model = ComBatGAM(smooth={"age": {}}, random_state=3).fit(train[FEATURES], batch=train.SITE,
                                                              covariates=train[["age", "sex"]])
    n = len(train)
    folds = np.array_split(np.random.default_rng(3).permutation(n), 5)
    onehot = pd.get_dummies(train.SITE).to_numpy(float)
    smoother = BSplines(train[["age"]].to_numpy(), df=10, degree=3)
    expected = []
    for name in FEATURES:
        path = MultivariateGAMCVPath(smoother=smoother, alphas=[ALPHA_GRID], gam=GLMGam,
                                     cost=lambda a, b: np.linalg.norm(a - b) / len(a), endog=train[name].to_numpy(),
                                     exog=np.column_stack([onehot, train.sex]), cv_iterator=_Folds(folds, n)).fit()
        expected.append(path.alpha_cv[0])
    np.testing.assert_array_equal(model.alpha_[0], expected)
    assert len(set(expected)) > 1  # the choice differs between features


@pytest.fixture(scope="module")
def lifespan():
    """Three sites over different age ranges, a nonlinear age effect, site1 free of site effects (the truth)."""
    rng = np.random.default_rng(7)
    n_site, n_feat = 150, 8
    ranges = {"site1": (20, 85), "site2": (20, 50), "site3": (55, 85)}
    site = np.repeat(list(ranges), n_site)
    age = np.concatenate([rng.uniform(lo, hi, n_site) for lo, hi in ranges.values()])
    codes = np.repeat(np.arange(3), n_site)
    curve = 6 * np.sin((age[:, None] - 20) / 65 * np.pi * rng.uniform(0.8, 1.2, n_feat))  # rises then falls
    truth = 10 + curve + rng.normal(0, 0.5, (len(age), n_feat))
    shift = np.array([0.0, 1.5, -1.0])[:, None] * rng.uniform(0.5, 1.5, n_feat)
    scale = np.array([1.0, 1.4, 0.7])[:, None] * np.ones(n_feat)
    observed = 10 + curve + shift[codes] + scale[codes] * (truth - 10 - curve)
    return observed, truth, site, pd.DataFrame({"age": age})


def test_keeps_a_nonlinear_age_effect_that_linear_combat_distorts(lifespan):
    observed, truth, site, covariates = lifespan
    gam = ComBatGAM(smooth={"age": {}}, ref_batch="site1").fit_transform(observed, batch=site, covariates=covariates)
    linear = ComBat(ref_batch="site1").fit_transform(observed, batch=site, covariates=covariates)
    moved = site != "site1"
    rmse = {name: float(np.sqrt(np.mean((out[moved] - truth[moved]) ** 2))) for name, out in
            (("gam", gam), ("combat", linear), ("none", observed))}
    # measured: gam 0.092, linear ComBat 0.338, unharmonized 1.231 (RMSE against the truth, sites 2 and 3)
    assert rmse["gam"] < 0.15 and rmse["combat"] > 3 * rmse["gam"] and rmse["none"] > 1.0


def test_fit_then_transform_equals_fit_transform_and_new_covariates_are_used(lifespan):
    observed, _, site, covariates = lifespan
    model = ComBatGAM(smooth={"age": {"df": 8, "alpha": 100.0}})
    once = model.fit_transform(observed, batch=site, covariates=covariates)
    np.testing.assert_array_equal(once, model.transform(observed, batch=site, covariates=covariates))
    older = covariates.assign(age=np.clip(covariates.age + 5, None, covariates.age.max()))
    moved = model.transform(observed, batch=site, covariates=older)
    basis = model._design(older, len(older), None) - model._design(covariates, len(older), None)
    np.testing.assert_allclose(moved - once, -(basis @ model.covariate_coef_) / np.sqrt(model.delta_star_[
        np.unique(site, return_inverse=True)[1]]) + basis @ model.covariate_coef_, atol=1e-10)


def test_contract_errors_and_json_round_trip(lifespan, tmp_path):
    observed, _, site, covariates = lifespan
    model = ComBatGAM(smooth={"age": {"bounds": (15, 90), "alpha": 10.0}}, ref_batch="site2")
    with pytest.raises(NotFittedError):
        model.transform(observed, batch=site, covariates=covariates)
    assert clone(model).get_params() == model.get_params()
    model.fit(observed, batch=site, covariates=covariates)
    with pytest.raises(HarmonizationError, match="batch 'site9'"):
        model.transform(observed[:1], batch=["site9"], covariates=covariates[:1])
    with pytest.raises(HarmonizationError, match=r"covariate 'age' is 95.0 in sample row 0, outside .*\[15, 90\]"):
        model.transform(observed[:1], batch=["site1"], covariates=pd.DataFrame({"age": [95.0]}))
    with pytest.raises(HarmonizationError, match=r"smooth covariate\(s\) \['age'\] missing"):
        model.transform(observed[:1], batch=["site1"], covariates=pd.DataFrame({"sex": [1.0]}))
    young = model.transform(observed[:1], batch=["site1"], covariates=pd.DataFrame({"age": [16.0]}))  # inside bounds
    again = ComBatGAM.load(model.save(tmp_path / "model.json"))
    assert json.loads((tmp_path / "model.json").read_text())["format"] == GAM_MODEL_FORMAT
    np.testing.assert_array_equal(again.transform(observed, batch=site, covariates=covariates),
                                  model.transform(observed, batch=site, covariates=covariates))
    np.testing.assert_array_equal(again.transform(observed[:1], batch=["site1"],
                                                  covariates=pd.DataFrame({"age": [16.0]})), young)
    with pytest.raises(HarmonizationError, match="not a harmony ComBatGAM model"):
        ComBatGAM.from_dict(ComBat().fit(observed, batch=site).to_dict())
    with pytest.raises(HarmonizationError, match="df=4 is too small"):
        ComBatGAM(smooth={"age": {"df": 4}}).fit(observed, batch=site, covariates=covariates)


def test_without_smooth_terms_it_is_combat(lifespan):
    observed, _, site, covariates = lifespan
    np.testing.assert_allclose(ComBatGAM().fit_transform(observed, batch=site, covariates=covariates),
                               ComBat().fit_transform(observed, batch=site, covariates=covariates), rtol=0, atol=1e-10)


def test_a_covariate_with_too_few_distinct_values_is_refused_not_crashed():
    """Quantile knots of a covariate with 3 values coincide: a plain refusal, not scipy's ValueError."""
    rng = np.random.default_rng(0)
    radius = np.tile([5.0, 7.0, 9.0], 20)
    X = pd.DataFrame(rng.normal(size=(60, 2)) + radius[:, None], columns=["a", "b"])
    with pytest.raises(HarmonizationError, match=r"covariate 'radius' has 3 distinct values, too few"):
        ComBatGAM(smooth={"radius": {}}).fit(X, batch=np.repeat(["s1", "s2"], 30),
                                         covariates=pd.DataFrame({"radius": radius}))
