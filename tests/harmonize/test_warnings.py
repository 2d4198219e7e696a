"""Harmonization that may mislead says so, once each, in plain words, naming features, batches and counts."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from harmony.cli import main
from harmony.core import schema
from harmony.harmonize.combat import ComBat
from harmony.harmonize.features import harmonize_features
from harmony.harmonize.inputs import HarmonizationError, HarmonizationWarning
from harmony.harmonize.metrics import harmonization_metrics, site_classifier_accuracy
from harmony.harmonize.simulation import simulate_site_features
from harmony.harmonize.transforms import SKEWNESS_THRESHOLD, Auto


def messages(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, HarmonizationWarning)]


# -- small batches -------------------------------------------------------------------------------------

def test_a_small_batch_warns_naming_it_and_its_count():
    rng = np.random.default_rng(0)
    batch = np.array(["big"] * 30 + ["small"] * 4 + ["tiny"] * 3)
    X = rng.normal(size=(37, 5))
    with pytest.warns(HarmonizationWarning) as record:
        ComBat().fit(X, batch=batch)
    [text] = [m for m in messages(record) if "fewer than" in m]
    assert "2 batch(es) with fewer than 10 subjects: 'small' (4), 'tiny' (3)" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error", HarmonizationWarning)
        ComBat(min_batch_size=3).fit(X, batch=batch[::-1])  # configurable: no batch below 3
    with pytest.raises(HarmonizationError, match="min_batch_size must be a whole number >= 2, got 1"):
        ComBat(min_batch_size=1).fit(X, batch=batch)
    with pytest.raises(HarmonizationError, match="batch 'lonely' has a single sample"):
        ComBat().fit(X[:31], batch=np.append(batch[:30], "lonely"))


# -- values out of their bounds --------------------------------------------------------------------------

def test_features_never_negative_that_come_out_negative_are_counted_and_named():
    """As in the issue: a small training batch with a wide spread pulls never-negative features below zero."""
    rng = np.random.default_rng(1)
    batch = np.repeat(["a", "b", "c"], [40, 40, 3])
    X = rng.exponential(1.0, size=(83, 4))
    X[batch == "c"] = rng.exponential(3.0, size=(3, 4)) + 0.5
    X[0, 2] = 0.0  # bounded, but with a zero: log does not apply
    with pytest.warns(HarmonizationWarning) as record:
        Y = ComBat().fit_transform(X, batch=batch)
    [text] = [m for m in messages(record) if "never negative" in m]
    below = (Y < 0).sum(axis=0)
    assert (below > 0).sum() >= 2
    named = dict(re.findall(r"'(column \d)' \((\d+)", text))
    assert named == {f"column {j}": str(below[j]) for j in range(4) if below[j]}
    assert f"{int((below > 0).sum())} of 4 features never negative in fit came out negative ({below.sum()} value(s))" \
        in text
    assert "--transform of harmony harmonize" in text and ("'column 2' (" in text) is ("has zeros" in text)
    with warnings.catch_warnings():  # the transform it names prevents it
        warnings.simplefilter("ignore", HarmonizationWarning)
        positive = ComBat(feature_transform="log").fit_transform(X[:, [0, 1, 3]], batch=batch)
    assert (positive > 0).all()


def test_a_saved_model_keeps_the_bounds(tmp_path):
    rng = np.random.default_rng(2)
    batch = np.repeat(["a", "b"], 20)
    X = rng.exponential(1.0, size=(40, 3))
    model = ComBat(min_batch_size=2).fit(X, batch=batch)
    again = ComBat.load(model.save(tmp_path / "model.json"))
    np.testing.assert_array_equal(again.training_min_, X.min(axis=0))
    with pytest.warns(HarmonizationWarning, match="1 of 3 features never negative in fit came out negative"):
        again.transform(np.array([[-5.0, 1.0, 1.0]]), batch=["a"])


# -- transform="auto" ------------------------------------------------------------------------------------

def test_auto_transform_picks_per_feature_and_records_the_choice():
    rng = np.random.default_rng(4)
    batch = np.repeat(["a", "b"], 100)
    X = np.column_stack([rng.normal(5, 1, 200), rng.lognormal(0, 1, 200), rng.lognormal(0, 1, 200) - 1.5])
    X[batch == "b"] *= 1.3
    model = ComBat(feature_transform="auto").fit(X, batch=batch)
    saved = model.to_dict()["transform"]
    assert saved["choices"] == [None, "log", "yeo-johnson"] and saved["threshold"] == SKEWNESS_THRESHOLD == 1.0
    from scipy import stats

    np.testing.assert_allclose(saved["skewness"], stats.skew(X, axis=0, bias=False), rtol=1e-12)
    assert (model.transform(X, batch=batch)[:, 1] > 0).all()
    again = ComBat.from_dict(model.to_dict())
    np.testing.assert_array_equal(again.transform(X, batch=batch), model.transform(X, batch=batch))
    assert Auto().fit(np.ones((5, 1)), ["flat"]).choices == [None]


# -- degenerate statistics ---------------------------------------------------------------------------------

def test_degenerate_statistics_are_reported_once_each_without_numpy_warnings():
    rng = np.random.default_rng(5)
    batch = np.repeat(["a", "b", "c"], 15)
    X = rng.normal(size=(45, 6)) + np.repeat([0.0, 1.0, 2.0], 15)[:, None]
    X[batch == "b", 0] = 3.0
    X[batch == "b", 4] = 1.0
    X[batch == "c"] = rng.normal(size=6)[None, :] * 0 + np.arange(6)  # every feature constant in 'c'
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for ref in (None, "a"):
            ComBat(ref_batch=ref).fit(X, batch=batch)
    assert not [w for w in record if issubclass(w.category, RuntimeWarning)]
    found = messages(record)
    constant = [m for m in found if "constant within the batch" in m]
    assert len(constant) == 2  # one per fit
    assert "8 case(s): 'column 0' in 'b', 'column 4' in 'b', 'column 0' in 'c', 'column 1' in 'c'" in constant[0]
    prior = [m for m in found if "prior without spread" in m]
    assert len(prior) == 2 and "'c'" in prior[0] and "'b'" not in prior[0]


# -- the site effect after harmonization ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def unbalanced():
    cases, features = simulate_site_features(n_cases=120, n_features=6, site_shift=2.0, rng=np.random.default_rng(6))
    keep = cases[schema.CASE_ID][(cases[schema.SITE] == "scanner1") | (np.arange(len(cases)) % 3 == 0)]
    return cases[cases[schema.CASE_ID].isin(keep)], features[features[schema.CASE_ID].isin(keep)]


def test_site_classifier_reports_balanced_accuracy_with_chance_one_over_k(unbalanced):
    cases, features = unbalanced
    counts = cases[schema.SITE].value_counts()
    assert counts.iloc[0] / counts.sum() >= 0.5  # plain accuracy's "chance" would be the largest share
    rng = np.random.default_rng(1)
    noise = features.assign(**{schema.VALUE: rng.normal(size=len(features))})
    result = site_classifier_accuracy(noise)
    assert result["chance"] == 0.25
    assert abs(result["accuracy"] - 0.25) < 0.12  # balanced accuracy of noise is near 1/k, not near the share


def _fake(harmonized: pd.DataFrame, combat_values: np.ndarray) -> pd.DataFrame:
    out = harmonized.copy()
    out.loc[out[schema.STAGE] == "combat", schema.VALUE] = combat_values
    return out


def test_a_harmonization_that_did_not_move_the_classifier_toward_chance_says_so(unbalanced):
    cases, features = unbalanced
    table = harmonize_features(features, cases)
    raw = table.loc[table[schema.STAGE] == "raw", schema.VALUE].to_numpy()
    with pytest.warns(HarmonizationWarning) as record:
        harmonization_metrics(_fake(table, raw), cases, n_splits=3)  # "harmonized" = raw: nothing moved
    [text] = [m for m in messages(record) if "toward chance" in m]
    assert re.search(r"balanced accuracy (0\.\d+|1\.000) before, \1 after, chance 0\.250 \(1/4 sites\)", text)
    with warnings.catch_warnings(record=True) as honest:
        warnings.simplefilter("always")
        harmonization_metrics(table, cases, n_splits=3)
    assert not [m for m in messages(honest) if "toward chance" in m or "ROSE" in m]


def test_a_distribution_level_site_effect_that_rises_is_reported(unbalanced):
    cases, features = unbalanced
    table = harmonize_features(features, cases)
    raw = table[table[schema.STAGE] == "raw"]
    rng = np.random.default_rng(3)
    no_site = _fake(table, rng.normal(size=len(raw)))  # the raw stage becomes the shifted one below
    shifted = no_site.copy()
    is_raw, is_combat = shifted[schema.STAGE] == "raw", shifted[schema.STAGE] == "combat"
    shifted.loc[is_raw, schema.VALUE] = no_site.loc[is_combat, schema.VALUE].to_numpy()
    site_b = (shifted[schema.SITE] != "scanner1").to_numpy()
    shifted.loc[is_combat, schema.VALUE] = (no_site.loc[is_combat, schema.VALUE].to_numpy()
                                           * np.where(site_b[is_combat.to_numpy()], 4.0, 1.0))
    with pytest.warns(HarmonizationWarning) as record:
        harmonization_metrics(shifted, cases, n_splits=3)
    rose = [m for m in messages(record) if "ROSE" in m]
    assert any("Anderson-Darling fraction of features with a site effect 0.000 -> " in m for m in rose)


# -- the CLI prints each warning once -------------------------------------------------------------------------

def test_cli_prints_each_warning_once_in_plain_words(tmp_path, capsys):
    _, features = simulate_site_features(n_cases=24, n_features=4, rng=np.random.default_rng(7))
    features.to_parquet(tmp_path / "features.parquet")
    assert main(["harmonize", str(tmp_path / "features.parquet"), "--folds", "2", "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    line = ("harmony harmonize: warning: ComBat: 4 batch(es) with fewer than 10 subjects: 'scanner1' (6), "
            "'scanner2' (6), 'scanner3' (6), 'scanner4' (6)")
    assert err.count(line) == 1 and "RuntimeWarning" not in err and ".py:" not in err
