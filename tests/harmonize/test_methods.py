"""Every method of the registry: the estimator contract as hypothesis properties, and the config and registry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harmony.core.config import validate
from harmony.core.errors import ConfigError
from harmony.harmonize.inputs import HarmonizationError
from harmony.harmonize.methods import (
    REGISTRY,
    load_model,
    make_harmonizer,
    method_of,
    model_covariates,
)
from harmony.harmonize.settings import METHODS, SETTINGS, method_options

#: Options that keep each method quick and deterministic (a fixed spline penalty: no cross-validation).
OPTIONS = {"combat": {}, "gam": {"smooth": ["age"], "alpha": 1.0}, "covbat": {}, "nested": {}, "gmm": {}}
PROPERTY = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cohort(seed: int, n_per_site: int, n_features: int, shift: float = 0.0):
    """Three sites, an age effect and additive location effects of the two acquisition variables (vendor, kernel),
    as Nested ComBat assumes; ``shift`` is added to site s3 (vendor B)."""
    rng = np.random.default_rng(seed)
    site = np.repeat(["s1", "s2", "s3"], n_per_site)
    frame = pd.DataFrame({"vendor": np.where(site == "s3", "B", "A"), "kernel": np.where(site == "s2", "sharp", "soft")})
    age = rng.uniform(20, 80, len(site))
    X = (rng.normal(10, 1, n_features) + 0.02 * np.outer(age, rng.normal(size=n_features))
         + rng.normal(0, 1.5, n_features) * (frame["vendor"] == "B").to_numpy()[:, None]
         + rng.normal(0, 1.5, n_features) * (frame["kernel"] == "sharp").to_numpy()[:, None]
         + rng.normal(size=(len(site), n_features)))
    X[site == "s3"] += shift
    return X, site, frame, pd.DataFrame({"age": age})


def batch_for(method: str, site, frame):
    return frame if REGISTRY[method].several_batches else site


def make(method: str):
    return make_harmonizer(method, {}, OPTIONS[method])


cases = st.tuples(st.integers(0, 2**31 - 1), st.integers(20, 40), st.integers(3, 6))


@pytest.mark.parametrize("method", METHODS)
@PROPERTY
@given(case=cases)
def test_fit_then_transform_equals_fit_transform(method, case):
    X, site, frame, cov = cohort(*case)
    batch = batch_for(method, site, frame)
    once = make(method).fit_transform(X, batch=batch, covariates=cov)
    twice = make(method).fit(X, batch=batch, covariates=cov).transform(X, batch=batch, covariates=cov)
    np.testing.assert_allclose(once, twice, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
@PROPERTY
@given(case=cases, shift=st.floats(3.0, 20.0))
def test_an_added_site_shift_is_removed(method, case, shift):
    X, site, frame, cov = cohort(*case, shift=shift)
    Y = make(method).fit_transform(X, batch=batch_for(method, site, frame), covariates=cov)
    gap = np.abs(Y[site == "s3"].mean(axis=0) - Y[site != "s3"].mean(axis=0))
    assert (gap < min(1.5, shift / 2)).all(), gap  # the shift (>= 3 SD) is gone, up to the noise (1 SD)


@pytest.mark.parametrize("method", METHODS)
@PROPERTY
@given(case=cases, seed=st.integers(0, 2**31 - 1))
def test_permuting_subjects_permutes_the_output(method, case, seed):
    X, site, frame, cov = cohort(*case)
    p = np.random.default_rng(seed).permutation(len(X))
    Y = make(method).fit_transform(X, batch=batch_for(method, site, frame), covariates=cov)
    Yp = make(method).fit_transform(X[p], batch=batch_for(method, site[p], frame.iloc[p].reset_index(drop=True)),
                                    covariates=cov.iloc[p].reset_index(drop=True))
    np.testing.assert_allclose(Yp, Y[p], rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
@PROPERTY
@given(case=cases)
def test_json_round_trip_is_exact(method, case):
    X, site, frame, cov = cohort(*case)
    batch = batch_for(method, site, frame)
    model = make(method).fit(X, batch=batch, covariates=cov)
    again = type(model).from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(again.transform(X, batch=batch, covariates=cov),
                                  model.transform(X, batch=batch, covariates=cov))
    assert again.get_params().keys() == model.get_params().keys()


# -- the registry and the config ---------------------------------------------------------------------

def test_registry_names_classes_and_formats_are_distinct():
    assert tuple(REGISTRY) == METHODS == ("combat", "gam", "covbat", "nested", "gmm")
    assert len({m.estimator for m in REGISTRY.values()}) == len({m.format for m in REGISTRY.values()}) == 5
    for name, entry in REGISTRY.items():
        assert method_of(entry.estimator()) == name


@pytest.mark.parametrize("method", METHODS)
def test_load_model_reads_every_method_and_its_covariates(method, tmp_path):
    X, site, frame, cov = cohort(1, 20, 4)
    model = make(method).fit(X, batch=batch_for(method, site, frame), covariates=cov)
    loaded = load_model(model.save(tmp_path / "model.json"))
    assert type(loaded) is type(model) and model_covariates(loaded) == ["age"]


def test_load_model_refuses_other_files_and_a_method_that_contradicts_the_format(tmp_path):
    (tmp_path / "other.json").write_text('{"format": "something.else"}')
    with pytest.raises(HarmonizationError, match="not a harmony harmonization model"):
        load_model(tmp_path / "other.json")
    X, site, _, _ = cohort(1, 20, 4)
    data = make("combat").fit(X, batch=site).to_dict()
    (tmp_path / "lying.json").write_text(json.dumps({**data, "method": "covbat"}))
    with pytest.raises(HarmonizationError, match="records method 'covbat' but its format"):
        load_model(tmp_path / "lying.json")


def test_method_options_are_validated_by_the_config_language():
    settings_ = validate({"method": "nested", "nested": {"batch_columns": ["vendor", "kernel"], "order": "given"}},
                         SETTINGS)
    assert method_options(settings_) == {"batch_columns": ["vendor", "kernel"], "order": "given", "beam_width": 3}
    model = make_harmonizer("nested", {}, method_options(settings_), batch_columns=["vendor", "kernel"])
    assert model.order == ["vendor", "kernel"]
    with pytest.raises(ConfigError, match="method: must be one of"):
        validate({"method": "harmonize-harder"}, SETTINGS)
    with pytest.raises(ConfigError, match=r"covbat\.pc_variance: must be <= 1.0"):
        validate({"covbat": {"pc_variance": 2.0}}, SETTINGS)
    with pytest.raises(ConfigError, match="n_pcs"):
        make_harmonizer("covbat", {}, {"n_pcs": 3})
    assert make_harmonizer("gam", {"min_batch_size": 10}, {"smooth": ["age"]}).smooth["age"]["df"] == 10
    with pytest.raises(HarmonizationError, match="method 'gmm' does not take ref_batch"):
        make_harmonizer("gmm", {"ref_batch": "s1"})
