"""Nested ComBat: OPNested's order search (generalized-combat, on neuroCombat) and combatlearn's NestedComBat on
the same data, the beam search's cost, the contract, and three acquisition parameters' effects removed."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import anderson_ksamp
from sklearn.base import clone

from harmony.harmonize.combat import ComBat
from harmony.harmonize.inputs import HarmonizationError
from harmony.harmonize.nested import NestedComBat, distribution_differences
from tests.harmonize.oracle import neurocombat

VARIABLES = ("vendor", "kernel", "thickness")


def acquisition_cohort(rng, n=240, n_feat=12, variables=VARIABLES, levels=(2, 2, 3)):
    """Crossed acquisition parameters, each with its own location and scale effect on every feature."""
    batch = pd.DataFrame({name: np.array([f"{name}{k}" for k in rng.integers(0, m, n)])
                          for name, m in zip(variables, levels)})
    truth = rng.normal(10, 1, n_feat) + rng.normal(size=(n, n_feat))
    X = truth.copy()
    for name, m in zip(variables, levels):
        codes = np.unique(batch[name], return_inverse=True)[1]
        X += rng.normal(0, 1.0, (m, n_feat))[codes]
        X += (rng.uniform(0.6, 1.5, (m, n_feat))[codes] - 1) * (truth - truth.mean(axis=0))
    age = pd.DataFrame({"age": rng.uniform(20, 80, n).astype(np.float32).astype(float)})
    return X + 0.02 * np.outer(age.age, rng.normal(size=n_feat)), batch, age


@pytest.fixture(scope="module")
def cohort():
    return acquisition_cohort(np.random.default_rng(21))


def opnested(X, batch, covariates):
    """generalized-combat's OPNestedComBat loop on neuroCombat 0.2.12 (every order, AD p < 0.05 counted)."""
    counts, outputs = {}, {}
    names = list(batch.columns)
    for order in itertools.permutations(range(len(names))):
        out = X
        for i in order:
            out = neurocombat(out, batch[names[i]].to_numpy(), covariates)
        count = 0
        for name in names:
            for j in range(out.shape[1]):
                groups = [out[batch[name].to_numpy() == level, j] for level in batch[name].unique()]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the p-value floored or capped
                    count += anderson_ksamp(groups).pvalue < 0.05
        counts[order], outputs[order] = count, out
    best = min(counts, key=counts.get)
    return [names[i] for i in best], outputs[best], counts


def test_optimised_order_and_output_match_opnested(cohort):
    X, batch, age = cohort
    order, expected, counts = opnested(X, batch, age)
    model = NestedComBat().fit(X, batch=batch, covariates=age)
    assert model.order_ == order
    assert sorted(model.criterion_.values()) == sorted(counts.values())
    np.testing.assert_allclose(model.transform(X, batch=batch, covariates=age), expected, rtol=0, atol=1e-8)
    assert len(set(counts.values())) > 1  # the order mattered


def test_matches_combatlearn_nested_combat_with_its_eb_step_bypassed(cohort, monkeypatch):
    """combatlearn 2.3 pools its EB priors across batches per feature (R and harmony: across features per batch),
    so with EB it differs (by ~0.1 here); without EB the two agree to 1e-10, order search included."""
    combatlearn = pytest.importorskip("combatlearn")
    from combatlearn.core import ComBatModel

    X, batch, age = cohort
    frame = pd.DataFrame(X)
    with_eb = combatlearn.NestedComBat(batch=batch, continuous_covariates=age, optimize_order=False, eps=0.0)
    ours_eb = NestedComBat(order=list(VARIABLES)).fit_transform(X, batch=batch, covariates=age)
    assert np.abs(np.asarray(with_eb.fit_transform(frame)) - ours_eb).max() > 1e-3
    monkeypatch.setattr(ComBatModel, "_shrink_eb", lambda self, g, d, *args, **kwargs: (g.copy(), d.copy()))
    for optimise in (False, True):
        theirs = combatlearn.NestedComBat(batch=batch, continuous_covariates=age, optimize_order=optimise, eps=0.0)
        got = theirs.fit_transform(frame)
        ours = NestedComBat(order=None if optimise else list(VARIABLES), eb=False).fit(X, batch=batch, covariates=age)
        assert ours.order_ == list(theirs.order_)
        np.testing.assert_allclose(ours.transform(X, batch=batch, covariates=age), np.asarray(got), rtol=0,
                                   atol=1e-10)


def test_removes_each_of_three_acquisition_parameters(cohort):
    X, batch, age = cohort
    labels = {name: batch[name].to_numpy() for name in VARIABLES}
    nested = NestedComBat().fit_transform(X, batch=batch, covariates=age)
    vendor_only = ComBat().fit_transform(X, batch=batch["vendor"], covariates=age)
    count = {name: {what: distribution_differences(Y, {name: labels[name]}) for what, Y in
                    (("raw", X), ("vendor ComBat", vendor_only), ("nested", nested))} for name in VARIABLES}
    # measured (features of 12 differing in distribution between levels, AD p < 0.05): vendor 10 raw -> 1 nested,
    # kernel 8 -> 1, thickness 10 -> 0; ComBat on the vendor alone leaves kernel 10 and thickness 10
    for name in VARIABLES:
        assert count[name]["raw"] >= 8 and count[name]["nested"] <= 1
    assert count["kernel"]["vendor ComBat"] >= 8 and count["thickness"]["vendor ComBat"] >= 8


def test_beam_search_does_not_enumerate_permutations(monkeypatch):
    names = ("a", "b", "c", "d", "e")
    X, batch, _ = acquisition_cohort(np.random.default_rng(3), n=200, n_feat=6, variables=names, levels=(2,) * 5)
    fits = []
    original = ComBat.fit
    monkeypatch.setattr(ComBat, "fit", lambda self, *a, **k: (fits.append(1), original(self, *a, **k))[1])
    model = NestedComBat(beam_width=2).fit(X, batch=batch)
    assert sorted(model.order_) == sorted(names)
    # beam 2 over 5 variables: 5 + 2 * (4 + 3 + 2 + 1) partial orders, then the 5 final fits; 5! * 5 = 600 exhaustive
    assert len(fits) == 5 + 2 * (4 + 3 + 2 + 1) + 5
    assert len(model.criterion_) == 2 and min(model.criterion_.values()) == model.criterion_[" > ".join(model.order_)]


def test_contract_reference_levels_and_json_round_trip(cohort, tmp_path):
    X, batch, age = cohort
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    model = NestedComBat(order=["kernel", "vendor", "thickness"], ref_batch={"vendor": "vendor1"})
    assert clone(model).get_params() == model.get_params()
    out = model.fit_transform(frame, batch=batch, covariates=age)
    assert model.order_ == ["kernel", "vendor", "thickness"] and model.criterion_ == {}
    np.testing.assert_array_equal(out, model.transform(frame, batch=batch, covariates=age))
    np.testing.assert_array_equal(model.transform(frame[frame.columns[::-1]], batch=batch, covariates=age),
                                  out[frame.columns[::-1]])
    again = NestedComBat.load(model.save(tmp_path / "nested.json"))
    np.testing.assert_array_equal(again.transform(frame, batch=batch, covariates=age), out)
    unseen = batch.iloc[:1].assign(thickness="thickness9")
    with pytest.raises(HarmonizationError, match="batch variable 'thickness': batch 'thickness9'"):
        model.transform(frame[:1], batch=unseen, covariates=age[:1])
    with pytest.raises(HarmonizationError, match=r"missing \['kernel'\]"):
        model.transform(frame[:1], batch=batch[["vendor", "thickness"]][:1], covariates=age[:1])
    with pytest.raises(HarmonizationError, match="order .* must list each batch variable"):
        NestedComBat(order=["vendor"]).fit(X, batch=batch)
    with pytest.raises(HarmonizationError, match="not a harmony NestedComBat model"):
        NestedComBat.from_dict(ComBat().fit(X, batch=batch["vendor"]).to_dict())


def test_values_below_the_training_bound_are_warned_once_on_the_output():
    """The inner steps' warnings on intermediate results are silenced; the final output's is given once."""
    rng = np.random.default_rng(0)
    batch = pd.DataFrame({"s": np.repeat(["a", "b"], 30), "k": np.tile(["x", "y"], 30)})
    X = np.exp(rng.normal(size=(60, 5)) * np.where(batch.s == "b", 1.5, 0.3)[:, None])  # positive, skewed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = NestedComBat(order=["s", "k"]).fit_transform(X, batch=batch)
    messages = [str(w.message) for w in caught if "never negative" in str(w.message)]
    assert len(messages) == 1 and f"({int((out < 0).sum())} value(s))" in messages[0]
