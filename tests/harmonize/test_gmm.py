"""GMM ComBat: combatlearn's grouping and its NestedComBat(gmm="batch") on the same data, scikit-learn's mixture
predictions, a hidden scanner found and removed, and the contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from harmony.harmonize.combat import ComBat
from harmony.harmonize.gmm import GMMComBat, hidden_batch
from harmony.harmonize.inputs import HarmonizationError
from harmony.harmonize.nested import distribution_differences


def hidden_cohort(rng, n=240, n_feat=10):
    """Three known sites and a hidden scanner (about 40 % of the subjects) shifting every feature by 4 to 6 SD."""
    site = np.array(["site1", "site2", "site3"])[np.arange(n) % 3]
    hidden = rng.random(n) < 0.4
    codes = np.unique(site, return_inverse=True)[1]
    X = (rng.normal(10, 1, n_feat) + rng.normal(0, 0.7, (3, n_feat))[codes] + rng.normal(size=(n, n_feat))
         + hidden[:, None] * rng.uniform(4.0, 6.0, n_feat))
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(n_feat)], index=[f"s{i:03d}" for i in range(n)])
    return frame, pd.DataFrame({"site": site}, index=frame.index), hidden


@pytest.fixture(scope="module")
def cohort():
    return hidden_cohort(np.random.default_rng(8))


def test_finds_the_hidden_scanner_and_removes_it(cohort):
    X, batch, hidden = cohort
    model = GMMComBat().fit(X, batch=batch)
    found = model.hidden_batch(X) == "gmm1"
    agreement = max((found == hidden).mean(), (found != hidden).mean())
    truth = {"hidden": np.where(hidden, "yes", "no")}
    before = distribution_differences(X.to_numpy(), truth)
    site_only = distribution_differences(ComBat().fit_transform(X, batch=batch["site"]).to_numpy(), truth)
    after = distribution_differences(model.transform(X, batch=batch).to_numpy(), truth)
    # measured: 99.6 % of subjects assigned to their hidden scanner; features of 10 differing between the
    # hidden scanners (AD p < 0.05): 10 raw, 10 after ComBat on the site, 0 after GMM ComBat
    assert agreement > 0.95
    assert before == site_only == 10 and after <= 2
    assert sorted(model.nested_.order_) == ["gmm", "site"]


def test_grouping_matches_combatlearn_and_scikit_learn(cohort, monkeypatch):
    """The same feature, mixture and split as combatlearn 2.3's GMMGrouping; the assignment of new subjects is
    scikit-learn's predict; with EB bypassed in combatlearn (it pools EB priors across batches, see
    test_nested) NestedComBat(gmm="batch") equals GMMComBat(eb=False) to 1e-10."""
    combatlearn = pytest.importorskip("combatlearn")
    from combatlearn._nested import GMMGrouping
    from combatlearn.core import ComBatModel

    X, batch, _ = cohort
    feature, mixture, aic = hidden_batch(X.to_numpy(), random_state=0)
    theirs = GMMGrouping.fit(X, min_cluster_frac=0.25, random_state=0)
    assert X.columns[feature] == theirs.feature
    assert aic[feature] == pytest.approx(theirs.gmm.aic(X[[theirs.feature]].to_numpy()), rel=1e-12)
    np.testing.assert_allclose(np.sort(theirs.gmm.means_[:, 0]), mixture["means"], rtol=1e-12)
    model = GMMComBat(order=["site", "gmm"], eb=False).fit(X, batch=batch)
    new = np.linspace(X.iloc[:, feature].min() - 1, X.iloc[:, feature].max() + 1, 500)
    sklearn_labels = theirs.gmm.predict(new[:, None])
    ours = model.hidden_batch(pd.DataFrame(np.repeat(new[:, None], X.shape[1], axis=1), columns=X.columns))
    low = int(np.argmin(theirs.gmm.means_[:, 0]))
    np.testing.assert_array_equal(ours == "gmm0", sklearn_labels == low)

    monkeypatch.setattr(ComBatModel, "_shrink_eb", lambda self, g, d, *args, **kwargs: (g.copy(), d.copy()))
    nested = combatlearn.NestedComBat(batch=batch, gmm="batch", optimize_order=False, eps=0.0, random_state=0)
    np.testing.assert_allclose(model.transform(X, batch=batch).to_numpy(), np.asarray(nested.fit_transform(X)),
                               rtol=0, atol=1e-10)


def test_contract_without_known_batch_and_json_round_trip(cohort, tmp_path):
    X, batch, _hidden = cohort
    model = GMMComBat(random_state=4)
    assert clone(model).get_params() == model.get_params()
    out = model.fit_transform(X)  # the hidden batch alone
    assert model.nested_.order_ == ["gmm"]
    np.testing.assert_array_equal(out, model.transform(X))
    np.testing.assert_array_equal(out, GMMComBat(random_state=4).fit_transform(X))  # reproducible
    again = GMMComBat.load(model.save(tmp_path / "gmm.json"))
    np.testing.assert_array_equal(again.transform(X), out)
    with_site = GMMComBat().fit(X, batch=batch)
    with pytest.raises(HarmonizationError, match="batch variable 'site': batch 'site9'"):
        with_site.transform(X[:1], batch=batch[:1].assign(site="site9"))
    with pytest.raises(HarmonizationError, match="a batch variable is called 'gmm'"):
        GMMComBat().fit(X, batch=batch.rename(columns={"site": "gmm"}))
    unimodal = np.random.default_rng(0).normal(size=(100, 1))
    unimodal[:10] += 30  # the only split leaves 10 % in one component
    with pytest.raises(HarmonizationError, match="no feature splits into two Gaussian components of more than 25%"):
        GMMComBat().fit(unimodal)
