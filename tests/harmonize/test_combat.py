"""ComBat: the R references, neuroCombat equality, estimator contract, new data, persistence, degenerate input."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import config_context
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks as checks

from harmony.core.config import validate
from harmony.harmonize.combat import MODEL_FORMAT, MODEL_FORMAT_VERSION, ComBat
from harmony.harmonize.inputs import HarmonizationError
from harmony.harmonize.settings import SETTINGS, combat_options
from tests.conftest import reference_path
from tests.harmonize.oracle import neurocombat

OPTIONS = [dict(parametric=p, eb=e, mean_only=m)
           for p, e, m in itertools.product((True, False), (True, False), (False, True))]


def _id(opts: dict) -> str:
    return "-".join(k if v else f"no_{k}" for k, v in opts.items())


def cohort(rng: np.random.Generator, n: int = 60, n_features: int = 12, sites: str = "abc"):
    """Samples x features with site location/scale effects, an age and a sex effect; float32-exact age."""
    site = np.array(list(sites), dtype=object)[np.arange(n) % len(sites)]
    codes = np.unique(site, return_inverse=True)[1]
    age = rng.uniform(20, 80, n).astype(np.float32).astype(float)
    sex = rng.choice(["F", "M"], n)
    X = (rng.normal(5, 3, n_features) + 0.05 * np.outer(age, rng.normal(size=n_features))
         + np.outer(sex == "M", rng.normal(size=n_features))
         + rng.normal(0, 2, (len(sites), n_features))[codes]
         + rng.uniform(0.5, 2, (len(sites), n_features))[codes] * rng.normal(size=(n, n_features)))
    return X, site, pd.DataFrame({"age": age, "sex": sex})


# -- exactness ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def combat_reference():
    folder = reference_path("combat_reference")
    X = pd.read_csv(folder / "testdata.csv").to_numpy().T  # features x samples on disk
    batch = np.array([1] * 5 + [2] * 5)
    pheno = pd.DataFrame({"pheno": [1, 0] * 5})
    return folder / "outputs", X, batch, pheno


@pytest.mark.parametrize("adjusted", [True, False], ids=["adjusted", "unadjusted"])
@pytest.mark.parametrize("opts", OPTIONS, ids=_id)
def test_reproduces_the_r_reference_outputs(combat_reference, opts, adjusted):
    outputs, X, batch, pheno = combat_reference
    name = (f"testdata_combat_{'parametric' if opts['parametric'] else 'nonparametric'}_"
            f"{'adjusted' if adjusted else 'unadjusted'}{'' if opts['eb'] else '_noeb'}"
            f"{'_meanonly' if opts['mean_only'] else ''}_r.csv")
    expected = pd.read_csv(outputs / name).to_numpy().T
    got = ComBat(**opts).fit_transform(X, batch=batch, covariates=pheno if adjusted else None)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8)
    assert not np.allclose(got, X, atol=1e-3)  # it did adjust something


def test_all_sixteen_reference_variants_are_covered(combat_reference):
    outputs = combat_reference[0]
    assert len(list(outputs.glob("testdata_combat_*_r.csv"))) == 16 == len(OPTIONS) * 2


@pytest.mark.parametrize("opts", OPTIONS, ids=_id)
def test_equals_neurocombat_on_random_data(opts):
    X, site, cov = cohort(np.random.default_rng(7))
    ours = ComBat(**opts).fit_transform(X, batch=site, covariates=cov)
    np.testing.assert_allclose(ours, neurocombat(X, site, cov, **opts), rtol=0, atol=1e-8)


@pytest.mark.parametrize("opts", OPTIONS, ids=_id)
def test_ref_batch_equals_neurocombat_algorithm_and_leaves_the_reference_unchanged(opts, monkeypatch):
    X, site, cov = cohort(np.random.default_rng(8))
    # neuroCombat 0.2.12's ref_batch path calls np.int, gone in numpy 2: restored only to run the oracle
    monkeypatch.setattr(np, "int", int, raising=False)
    expected = neurocombat(X, site, cov, ref_batch="b", **opts)
    ours = ComBat(ref_batch="b", **opts).fit_transform(X, batch=site, covariates=cov)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-8)
    is_ref = site == "b"
    np.testing.assert_array_equal(ours[is_ref], X[is_ref])
    assert not np.allclose(ours[~is_ref], X[~is_ref])


def test_ref_batch_maps_other_batches_onto_the_reference_location():
    X, site, _ = cohort(np.random.default_rng(9), n=300)
    Y = ComBat(ref_batch="a", eb=False).fit_transform(X, batch=site)
    ref_mean = X[site == "a"].mean(axis=0)
    for s in "bc":
        np.testing.assert_allclose(Y[site == s].mean(axis=0), ref_mean, atol=1e-8)


def test_unknown_ref_batch_is_an_error():
    X, site, _ = cohort(np.random.default_rng(1))
    with pytest.raises(HarmonizationError, match=r"ref_batch 'z' is not one of the batches \['a', 'b', 'c'\]"):
        ComBat(ref_batch="z").fit(X, batch=site)


def test_more_features_than_samples_works_and_matches_neurocombat():
    X, site, cov = cohort(np.random.default_rng(3), n=24, n_features=200)
    np.testing.assert_allclose(ComBat().fit_transform(X, batch=site, covariates=cov), neurocombat(X, site, cov),
                               atol=1e-8)


def test_nonparametric_does_not_underflow_on_large_batches():
    X, site, _ = cohort(np.random.default_rng(4), n=2400, n_features=8)
    Y = ComBat(parametric=False).fit_transform(X, batch=site)
    assert np.isfinite(Y).all()
    with np.errstate(all="ignore"):  # neuroCombat's likelihood underflows to 0/0 here
        assert np.isnan(neurocombat(X, site, parametric=False)).any()


# -- estimator contract, new data ----------------------------------------------------------------

def test_estimator_contract_init_only_stores_and_clone_keeps_params():
    model = ComBat(parametric=False, feature_transform="log", ref_batch="a", min_batch_size=5)
    params = {"parametric": False, "eb": True, "mean_only": False, "ref_batch": "a", "feature_transform": "log",
              "min_batch_size": 5}
    assert model.get_params() == params == vars(model)  # every argument stored as given, under its own name
    assert clone(model).get_params() == params and clone(model) is not model
    assert callable(model.transform)  # the feature_transform parameter does not hide the method
    assert "feature_transform='log'" in repr(model)
    with pytest.raises(NotFittedError, match="not fitted"):
        model.transform(np.ones((2, 2)), batch=["a", "b"])
    with pytest.raises(ValueError, match="Invalid parameter 'transform' for estimator ComBat"):
        model.set_params(transform=None)
    assert model.set_params(feature_transform=None) is model and model.feature_transform is None


def test_clone_of_a_fitted_model_is_unfitted_with_the_same_params():
    X, site, cov = cohort(np.random.default_rng(1))
    fitted = ComBat(mean_only=True, ref_batch="b", feature_transform="yeo-johnson").fit(X, batch=site,
                                                                                       covariates=cov)
    again = clone(fitted)
    assert again.get_params() == fitted.get_params() and not hasattr(again, "gamma_star_")
    np.testing.assert_array_equal(again.fit(X, batch=site, covariates=cov).transform(X, batch=site, covariates=cov),
                                  fitted.transform(X, batch=site, covariates=cov))


SKLEARN_CHECKS = [checks.check_parameters_default_constructible, checks.check_no_attributes_set_in_init,
                  checks.check_get_params_invariance, checks.check_set_params, checks.check_estimator_cloneable,
                  checks.check_estimator_repr, checks.check_do_not_raise_errors_in_init_or_set_params,
                  checks.check_mixin_order, checks.check_valid_tag_types, checks.check_estimator_tags_renamed,
                  checks.check_transformers_unfitted]


@pytest.mark.parametrize("check", SKLEARN_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("model", [ComBat(), ComBat(parametric=False, eb=False, mean_only=True, ref_batch="a",
                                                    feature_transform="quantile-normal")], ids=["default", "all_set"])
def test_scikit_learn_estimator_checks_that_need_no_batch(check, model):
    """The checks of sklearn.utils.estimator_checks that do not fit (fitting needs batch=, which they cannot pass)."""
    check("ComBat", model)


def test_forgetting_batch_is_an_error_that_says_how_to_give_it():
    X, site, cov = cohort(np.random.default_rng(1))
    with pytest.raises(HarmonizationError, match=r"^ComBat.fit needs batch= \(one batch label per sample"):
        ComBat().fit(X)
    with pytest.raises(HarmonizationError, match=r"^ComBat.fit_transform needs batch="):
        ComBat().fit_transform(X, covariates=cov)
    routing = r"the y given is NOT used as the batch.* sklearn.set_config\(enable_metadata_routing=True\)"
    for call in (ComBat().fit, ComBat().fit_transform):
        with pytest.raises(HarmonizationError, match=routing):
            call(X, site)  # the batch passed where scikit-learn passes y
    with pytest.raises(HarmonizationError, match=routing):  # a Pipeline without metadata routing passes y only
        make_pipeline(ComBat(), LogisticRegression()).fit(X, cov["sex"])
    model = ComBat().fit(X, batch=site)
    with pytest.raises(HarmonizationError, match=r"^ComBat.transform needs batch="):
        model.transform(X)
    with pytest.raises(TypeError):  # batch is keyword-only in transform: no y to confuse it with
        model.transform(X, site)


def test_batch_and_covariates_are_requested_metadata_of_fit_and_transform():
    routing = ComBat().get_metadata_routing()
    for method in ("fit", "transform"):
        assert getattr(routing, method).requests == {"batch": True, "covariates": True}


@pytest.mark.parametrize("as_frame", [False, True], ids=["array", "dataframe"])
def test_pipeline_cross_validation_routes_batch_and_covariates_per_fold(as_frame):
    """cross_validate(Pipeline) with metadata routing == ComBat fitted by hand on each training fold."""
    X, site, cov = cohort(np.random.default_rng(13), n=90)
    labels = pd.Index([f"case{i:03d}" for i in range(len(X))])
    cov = cov.set_axis(labels)  # a labelled index, split per fold like X
    y = (cov["sex"] == "M").to_numpy().astype(int)  # biology to predict; the site is the batch
    data = pd.DataFrame(X, index=labels, columns=[f"f{j}" for j in range(X.shape[1])]) if as_frame else X
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    pipeline = make_pipeline(ComBat(), StandardScaler(), LogisticRegression())
    with config_context(enable_metadata_routing=True):
        result = cross_validate(pipeline, data, y, cv=cv, params={"batch": site, "covariates": cov},
                                return_estimator=True, return_indices=True, error_score="raise")
        assert cross_val_score(pipeline, data, y, cv=cv, params={"batch": site, "covariates": cov}).tolist() \
            == result["test_score"].tolist()
    for k, (train, test) in enumerate(cv.split(X, y)):
        np.testing.assert_array_equal(result["indices"]["train"][k], train)
        by_hand = ComBat().fit(X[train], batch=site[train], covariates=cov.iloc[train])
        routed = result["estimator"][k][0]
        assert [c.name for c in routed.covariates_] == ["age", "sex"]
        assert routed.batch_counts_.sum() == len(train)
        for name in ("grand_mean_", "covariate_coef_", "gamma_star_", "delta_star_"):
            np.testing.assert_allclose(getattr(routed, name), getattr(by_hand, name), rtol=0, atol=1e-12)
        classifier = make_pipeline(StandardScaler(), LogisticRegression()).fit(
            by_hand.transform(X[train], batch=site[train], covariates=cov.iloc[train]), y[train])
        score = classifier.score(by_hand.transform(X[test], batch=site[test], covariates=cov.iloc[test]), y[test])
        assert result["test_score"][k] == pytest.approx(score, abs=1e-12)


def test_bad_options_are_errors_naming_them():
    X, site, _ = cohort(np.random.default_rng(1))
    with pytest.raises(HarmonizationError, match="feature_transform must be None or one of"):
        ComBat(feature_transform="sqrt").fit(X, batch=site)
    with pytest.raises(HarmonizationError, match="eb must be true or false, got 'yes'"):
        ComBat(eb="yes").fit(X, batch=site)


def test_dataframe_in_dataframe_out_with_its_labels_and_column_order():
    X, site, cov = cohort(np.random.default_rng(2))
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])], index=[f"s{i}" for i in range(len(X))])
    cov = cov.set_axis(df.index)
    model = ComBat().fit(df, batch=pd.Series(site, index=df.index), covariates=cov)
    out = model.transform(df, batch=site, covariates=cov)
    assert list(out.columns) == list(df.columns) and list(out.index) == list(df.index)
    np.testing.assert_allclose(out.to_numpy(), ComBat().fit_transform(X, batch=site, covariates=cov), atol=1e-12)
    shuffled = df[df.columns[::-1]]
    np.testing.assert_allclose(model.transform(shuffled, batch=site, covariates=cov)[df.columns].to_numpy(),
                               out.to_numpy(), atol=1e-12)
    np.testing.assert_array_equal(model.feature_names_in_, df.columns)


def test_batch_and_covariates_are_aligned_by_index():
    X, site, cov = cohort(np.random.default_rng(2))
    df = pd.DataFrame(X, index=[f"s{i}" for i in range(len(X))])
    order = df.index[::-1]
    out = ComBat().fit_transform(df, batch=pd.Series(site, index=df.index)[order],
                                 covariates=cov.set_axis(df.index).loc[order])
    np.testing.assert_allclose(out.to_numpy(), ComBat().fit_transform(X, batch=site, covariates=cov), atol=1e-12)
    with pytest.raises(HarmonizationError, match="index does not match"):
        ComBat().fit(df, batch=pd.Series(site, index=range(len(site))))


def test_new_subjects_are_harmonized_with_their_own_covariates():
    """Fit on everyone, transform a subset: equals those rows of fit_transform (neuroCombatFromTraining is not)."""
    X, site, cov = cohort(np.random.default_rng(11))
    full = ComBat().fit_transform(X, batch=site, covariates=cov)
    model = ComBat().fit(X, batch=site, covariates=cov)
    subset = np.arange(0, len(X), 4)
    np.testing.assert_allclose(model.transform(X[subset], batch=site[subset], covariates=cov.iloc[subset]),
                               full[subset], atol=1e-10)


def test_unseen_batch_raises_naming_it_never_nan_rows():
    X, site, cov = cohort(np.random.default_rng(1))
    model = ComBat().fit(X, batch=site, covariates=cov)
    new_site = site.copy()
    new_site[3] = "scanner-x"
    with pytest.raises(HarmonizationError, match=r"batch 'scanner-x' \(sample row 3\) was not seen in fit"):
        model.transform(X, batch=new_site, covariates=cov)


def test_covariate_levels_are_learned_in_fit():
    X, site, cov = cohort(np.random.default_rng(1))
    model = ComBat().fit(X, batch=site, covariates=cov)
    assert [(c.name, c.levels) for c in model.covariates_] == [("age", None), ("sex", ("F", "M"))]
    bad = cov.assign(sex=["F"] * (len(cov) - 1) + ["X"])
    with pytest.raises(HarmonizationError, match=r"covariate 'sex': level 'X' was not seen in fit"):
        model.transform(X, batch=site, covariates=bad)
    with pytest.raises(HarmonizationError, match=r"missing \['sex'\], unexpected \['group'\]"):
        model.transform(X, batch=site, covariates=cov.rename(columns={"sex": "group"}))
    with pytest.raises(HarmonizationError, match=r"fitted with covariates \['age', 'sex'\]; pass them"):
        model.transform(X, batch=site)
    with pytest.raises(HarmonizationError, match=r"covariate 'age': missing value in sample row 5"):
        model.transform(X, batch=site, covariates=cov.assign(age=np.where(np.arange(len(cov)) == 5, np.nan, cov.age)))


def test_a_single_level_covariate_is_named_in_a_warning_and_changes_nothing():
    X, site, cov = cohort(np.random.default_rng(2))
    with pytest.warns(UserWarning, match=r"covariate 'scanner_room' has a single level \('A',\)"):
        with_constant = ComBat().fit_transform(X, batch=site, covariates=cov.assign(scanner_room="A"))
    np.testing.assert_allclose(with_constant, ComBat().fit_transform(X, batch=site, covariates=cov), atol=1e-12)


def test_model_applied_to_another_feature_set_fails_naming_the_features():
    X, site, _ = cohort(np.random.default_rng(1))
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    model = ComBat().fit(df, batch=site)
    other = df.drop(columns=["f3"]).assign(g1=1.0)
    with pytest.raises(HarmonizationError, match=r"missing \['f3'\] \(1\), unexpected \['g1'\] \(1\)"):
        model.transform(other, batch=site)
    with pytest.raises(HarmonizationError, match="X has 11 features, the model was fitted on 12"):
        model.transform(X[:, 1:], batch=site)


# -- properties ------------------------------------------------------------------------------------

@st.composite
def datasets(draw):
    n_batches = draw(st.integers(2, 3))
    per_batch = draw(st.lists(st.integers(3, 7), min_size=n_batches, max_size=n_batches))
    n_features = draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    site = np.repeat(np.array(["s0", "s1", "s2"][:n_batches]), per_batch)
    codes = np.unique(site, return_inverse=True)[1]
    loc = draw(st.lists(st.floats(-50, 50), min_size=n_batches, max_size=n_batches))
    scale = draw(st.lists(st.floats(0.1, 10), min_size=n_batches, max_size=n_batches))
    X = np.asarray(loc)[codes, None] + np.asarray(scale)[codes, None] * rng.normal(size=(len(site), n_features))
    return X, site


option_sets = st.sampled_from(OPTIONS)


@settings(deadline=None, max_examples=25)
@given(datasets(), option_sets)
def test_fit_then_transform_equals_fit_transform(data, opts):
    X, site = data
    np.testing.assert_allclose(ComBat(**opts).fit(X, batch=site).transform(X, batch=site),
                               ComBat(**opts).fit_transform(X, batch=site),
                               rtol=0, atol=1e-10)


@settings(deadline=None, max_examples=25)
@given(datasets(), option_sets)
def test_output_is_finite_and_shape_preserving(data, opts):
    X, site = data
    Y = ComBat(**opts).fit_transform(X, batch=site)
    assert Y.shape == X.shape and np.isfinite(Y).all()


@settings(deadline=None, max_examples=25)
@given(datasets(), option_sets, st.randoms(use_true_random=False))
def test_permuting_samples_permutes_the_output(data, opts, random):
    X, site = data
    perm = np.array(random.sample(range(len(X)), len(X)))
    Y = ComBat(**opts).fit_transform(X, batch=site)
    np.testing.assert_allclose(ComBat(**opts).fit_transform(X[perm], batch=site[perm]), Y[perm], rtol=0,
                               atol=1e-8 * max(1.0, np.abs(X).max()))


@settings(deadline=None, max_examples=25)
@given(datasets(), st.lists(st.floats(-100, 100), min_size=3, max_size=3), st.booleans())
def test_a_site_specific_shift_is_removed(data, shifts, mean_only):
    """Without EB the shift is removed exactly: only its sample-weighted mean, the same for all, remains."""
    X, site = data
    codes = np.unique(site, return_inverse=True)[1]
    shift = np.asarray(shifts)[codes]
    model = ComBat(eb=False, mean_only=mean_only)
    diff = model.fit_transform(X + shift[:, None], batch=site) - model.fit_transform(X, batch=site)
    np.testing.assert_allclose(diff, shift.mean(), rtol=0, atol=1e-8 * (1 + np.abs(X).max() + np.abs(shift).max()))


@pytest.mark.parametrize("opts", OPTIONS, ids=_id)
def test_site_shift_is_removed_with_empirical_bayes_too(opts):
    X, site, _ = cohort(np.random.default_rng(5), n=300, n_features=30)
    shift = np.where(site == "b", 4.0, 0.0)[:, None]
    Y0, Y1 = ComBat(**opts).fit_transform(X, batch=site), ComBat(**opts).fit_transform(X + shift, batch=site)
    means = [(Y1 - Y0)[site == s].mean() for s in "abc"]
    assert np.ptp(means) < 0.05 and np.isclose(np.mean(Y1 - Y0), shift.mean(), atol=0.05)


# -- persistence -------------------------------------------------------------------------------------

@pytest.mark.parametrize("transform", [None, "log", "yeo-johnson", "quantile-normal"])
def test_save_load_roundtrip_is_exact_on_training_subjects(tmp_path, transform):
    X, site, cov = cohort(np.random.default_rng(6))
    X = np.abs(X) + 1
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    model = ComBat(feature_transform=transform, ref_batch="c")
    expected = model.fit_transform(df, batch=site, covariates=cov)
    path = model.save(tmp_path / "model.json")
    saved = json.loads(path.read_text())
    assert saved["format"] == MODEL_FORMAT and saved["format_version"] == MODEL_FORMAT_VERSION
    assert saved["feature_names"] == list(df.columns) and saved["harmony_version"]
    assert saved["params"] == model.get_params() and saved["params"]["feature_transform"] == transform
    assert set(saved["estimates"]) >= {"grand_mean", "var_pooled", "covariate_coef", "gamma_star", "delta_star"}
    loaded = ComBat.load(path)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_allclose(loaded.transform(df, batch=site, covariates=cov).to_numpy(), expected.to_numpy(),
                               rtol=0, atol=1e-10)


def test_load_refuses_other_formats_newer_versions_and_damaged_files(tmp_path):
    X, site, _ = cohort(np.random.default_rng(6))
    data = ComBat().fit(X, batch=site).to_dict()
    path = tmp_path / "m.json"
    path.write_text(json.dumps({**data, "format_version": MODEL_FORMAT_VERSION + 1}))
    with pytest.raises(HarmonizationError, match=f"format_version {MODEL_FORMAT_VERSION + 1} is not supported "
                                                 rf"\(this harmony reads 1 to {MODEL_FORMAT_VERSION}\); upgrade"):
        ComBat.load(path)
    for version in (0, True, "2", None):
        path.write_text(json.dumps({**data, "format_version": version}))
        with pytest.raises(HarmonizationError, match=rf"format_version {version!r} is not supported \(.*\)$"):
            ComBat.load(path)
    path.write_text(json.dumps({**data, "params": {**data["params"], "transform": None}}))
    with pytest.raises(HarmonizationError, match="damaged ComBat model .*unexpected keyword argument 'transform'"):
        ComBat.load(path)  # the old name is read in version 1 models only
    path.write_text(json.dumps({"format": "something"}))
    with pytest.raises(HarmonizationError, match="not a harmony ComBat model"):
        ComBat.load(path)
    broken = dict(data, estimates={k: v for k, v in data["estimates"].items() if k != "gamma_star"})
    path.write_text(json.dumps(broken))
    with pytest.raises(HarmonizationError, match="damaged ComBat model"):
        ComBat.load(path)
    path.write_text("{not json")
    with pytest.raises(Exception, match="not valid JSON"):
        ComBat.load(path)


def test_a_model_saved_in_format_version_1_still_loads_and_applies_the_same():
    """Written by harmony 0.1.0 (format 1, ``transform`` in its params) before the parameter was renamed."""
    path = Path(__file__).parent / "data" / "combat_model_v1.json"
    assert json.loads(path.read_text())["format_version"] == 1
    old = ComBat.load(path)
    assert old.get_params() == {"parametric": True, "eb": True, "mean_only": False, "ref_batch": "c",
                                "feature_transform": "log", "min_batch_size": 10}
    X, site, cov = cohort(np.random.default_rng(6), n=30, n_features=4)  # the data it was fitted on
    X = np.abs(X) + 1
    refit = ComBat(feature_transform="log", ref_batch="c").fit(X, batch=site, covariates=cov)
    np.testing.assert_allclose(old.transform(X, batch=site, covariates=cov),
                               refit.transform(X, batch=site, covariates=cov), rtol=0, atol=1e-10)
    assert not np.allclose(old.transform(X, batch=site, covariates=cov)[site != "c"], X[site != "c"])
    assert old.to_dict()["params"] == refit.get_params()  # saved again: format 2, the new name
    assert old.to_dict()["format_version"] == MODEL_FORMAT_VERSION == 2


# -- degenerate input --------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_errors_naming_feature_and_sample(bad):
    X, site, _ = cohort(np.random.default_rng(1))
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])], index=[f"case{i}" for i in range(len(X))])
    df.iloc[4, 2] = bad
    with pytest.raises(HarmonizationError, match=rf"feature 'f2' is {bad!r} in sample 'case4'"):
        ComBat().fit(df, batch=site)
    model = ComBat().fit(X, batch=site)
    X[1, 0] = bad
    with pytest.raises(HarmonizationError, match="feature column 0 .* in sample row 1"):
        model.transform(X, batch=site)


def test_single_subject_batch_is_an_error_unless_mean_only():
    X, site, _ = cohort(np.random.default_rng(1), n=31)
    site[-1] = "lonely"
    with pytest.raises(HarmonizationError, match="batch 'lonely' has a single sample: its variance cannot be"):
        ComBat().fit(X, batch=site)
    Y = ComBat(mean_only=True).fit_transform(X, batch=site)
    assert np.isfinite(Y).all()
    np.testing.assert_allclose(Y, neurocombat(X, site, mean_only=True), atol=1e-8)


def test_constant_feature_is_returned_unchanged_unlike_neurocombat():
    X, site, cov = cohort(np.random.default_rng(1))
    X[:, 3] = 7.25
    Y = ComBat().fit_transform(X, batch=site, covariates=cov)
    np.testing.assert_array_equal(Y[:, 3], 7.25)
    other = np.delete(np.arange(X.shape[1]), 3)
    np.testing.assert_allclose(Y[:, other], ComBat().fit_transform(X[:, other], batch=site, covariates=cov), atol=1e-12)
    model = ComBat().fit(X, batch=site, covariates=cov)
    assert model.constant_.tolist() == [j == 3 for j in range(X.shape[1])]
    new = X[:5].copy()
    new[:, 3] = 100.0  # a constant feature passes through at transform time too
    np.testing.assert_array_equal(model.transform(new, batch=site[:5], covariates=cov.iloc[:5])[:, 3], 100.0)


@pytest.mark.parametrize("opts", OPTIONS, ids=_id)
def test_feature_constant_within_one_batch(opts):
    """Documented: its zero variance becomes 1 (as R and neuroCombat); it stays constant in that batch."""
    X, site, _ = cohort(np.random.default_rng(12), n=90)
    X[site == "b", 0] = 3.0
    Y = ComBat(**opts).fit_transform(X, batch=site)
    assert np.isfinite(Y).all()
    assert np.ptp(Y[site == "b", 0]) < 1e-9
    assert np.ptp(Y[site != "b", 0]) > 1
    model = ComBat(**opts).fit(X, batch=site)
    assert model.delta_hat_[1, 0] == 1.0


def test_single_batch_is_an_error():
    X, _, _ = cohort(np.random.default_rng(1))
    with pytest.raises(HarmonizationError, match=r"at least 2 batches, got 1 \(\['a'\]\)"):
        ComBat().fit(X, batch=["a"] * len(X))


def test_covariate_confounded_with_batch_is_a_rank_deficiency_error():
    X, site, cov = cohort(np.random.default_rng(1))
    confounded = cov.assign(scanner_model=np.where(site == "a", "old", "new"))
    with pytest.raises(HarmonizationError, match="rank deficient .* covariate 'scanner_model' is confounded with"):
        ComBat().fit(X, batch=site, covariates=confounded)
    with pytest.raises(HarmonizationError, match="covariate 'dose' is confounded"):
        ComBat().fit(X, batch=site, covariates=cov.assign(dose=2.0))


def test_feature_without_residual_variance_is_an_error():
    X, site, _ = cohort(np.random.default_rng(1))
    X[:, 1] = np.where(site == "a", 1.0, 2.0)  # constant within every batch: nothing left to standardise
    with pytest.raises(HarmonizationError, match="feature 'column 1' has no residual variance overall"):
        ComBat().fit(X, batch=site)
    X, site, _ = cohort(np.random.default_rng(1))
    X[site == "a", 1] = 5.0
    with pytest.raises(HarmonizationError, match="no residual variance in reference batch 'a'"):
        ComBat(ref_batch="a").fit(X, batch=site)


def test_batch_labels_are_compared_as_text():
    X, site, _ = cohort(np.random.default_rng(1), sites="12")
    model = ComBat().fit(X, batch=site.astype(int))
    assert model.batches_ == ["1", "2"]
    np.testing.assert_allclose(model.transform(X, batch=site), model.transform(X, batch=site.astype(int)), atol=0)
    with pytest.raises(HarmonizationError, match="batch: missing label in sample row 0"):
        model.transform(X, batch=[None] + list(site[1:]))


def test_empirical_bayes_needs_two_varying_features():
    X, site, _ = cohort(np.random.default_rng(1), n_features=1)
    with pytest.raises(HarmonizationError, match="at least 2 features that vary, got 1"):
        ComBat().fit(X, batch=site)
    assert np.isfinite(ComBat(eb=False).fit_transform(X, batch=site)).all()


# -- config section ---------------------------------------------------------------------------------

def test_settings_schema_and_options():
    settings_ = validate({"covariates": ["age"], "ref_batch": "A", "transform": "yeo-johnson"}, SETTINGS)
    assert settings_["batch"] == "site" and settings_["enabled"] is True
    assert combat_options(settings_) == {"parametric": True, "eb": True, "mean_only": False, "ref_batch": "A",
                                         "feature_transform": "yeo-johnson", "min_batch_size": 10}
    assert ComBat(**combat_options(settings_)).feature_transform == "yeo-johnson"
    with pytest.raises(Exception, match="transform: must be one of"):
        validate({"transform": "boxcox"}, SETTINGS)
    from harmony.workflows.experiment import experiment_schema

    assert experiment_schema().fields["harmonization"] is SETTINGS


def test_save_load_roundtrip_without_covariates(tmp_path):
    """A model fitted without covariates has an empty (0 x features) coefficient matrix; loading it back must
    restore that shape, so the loaded model applies exactly as the fitted one."""
    rng = np.random.default_rng(3)
    batch = np.repeat(["a", "b", "c"], 12)
    X = rng.normal(size=(36, 5)) + np.repeat([0.0, 2.0, -1.0], 12)[:, None]
    model = ComBat().fit(X, batch=batch)
    again = ComBat.load(model.save(tmp_path / "model.json"))
    assert again.covariate_coef_.shape == model.covariate_coef_.shape == (0, 5)
    np.testing.assert_array_equal(again.transform(X, batch=batch), model.transform(X, batch=batch))
