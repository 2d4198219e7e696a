"""CovBat: the authors' algorithm (their Python script, reimplemented here as an oracle), the contract, and a
site-specific covariance that ComBat leaves and CovBat removes, on training and on new subjects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError

from harmony.harmonize.combat import ComBat
from harmony.harmonize.covbat import CovBat
from harmony.harmonize.inputs import HarmonizationError


def _script_combat(data, codes, cov, *, eb, t2_ddof):
    """combat() of github.com/andy1764/CovBat_Harmonization Python/covbat.py (brentp's combat.py), on features x
    samples; returns the adjusted data without the mean part and the mean part (grand mean + covariates)."""
    n_batch, n = codes.max() + 1, data.shape[1]
    onehot = np.eye(n_batch)[codes]
    design = np.hstack([onehot, cov])
    B = np.linalg.inv(design.T @ design) @ design.T @ data.T
    counts = onehot.sum(axis=0)
    grand_mean = (counts / n) @ B[:n_batch]
    var_pooled = ((data - (design @ B).T) ** 2).mean(axis=1)
    stand_mean = grand_mean[:, None] + (design[:, n_batch:] @ B[n_batch:]).T
    s = (data - stand_mean) / np.sqrt(var_pooled)[:, None]
    gamma_hat = np.linalg.inv(onehot.T @ onehot) @ onehot.T @ s.T
    delta_hat = np.array([s[:, codes == k].var(axis=1, ddof=1) for k in range(n_batch)])
    gamma_star, delta_star = gamma_hat.copy(), delta_hat.copy()
    if eb:
        gamma_bar, t2 = gamma_hat.mean(axis=1), gamma_hat.var(axis=1, ddof=t2_ddof)  # the script: ddof 0
        for k in range(n_batch):
            d = delta_hat[k]
            m, s2 = d.mean(), d.var(ddof=1)
            a, b = (2 * s2 + m**2) / s2, (m * s2 + m**3) / s2
            sdat, nk = s[:, codes == k], counts[k]
            g_old, d_old, change = gamma_hat[k], d, 1.0
            while change > 1e-4:
                g_new = (t2[k] * nk * gamma_hat[k] + d_old * gamma_bar[k]) / (t2[k] * nk + d_old)
                d_new = (0.5 * ((sdat - g_new[:, None]) ** 2).sum(axis=1) + b) / (nk / 2 + a - 1)
                change = max((abs(g_new - g_old) / g_old).max(), (abs(d_new - d_old) / d_old).max())
                g_old, d_old = g_new, d_new
            gamma_star[k], delta_star[k] = g_new, d_new
    adjusted = (s - gamma_star[codes].T) / np.sqrt(delta_star[codes].T)
    return adjusted * np.sqrt(var_pooled)[:, None], stand_mean


def covbat_script(X, batch, cov, *, pct_var=0.95, n_pc=0, t2_ddof=0):
    """covbat() of the authors' Python script on samples x features (PCA by scikit-learn, as the script)."""
    codes = np.unique(batch, return_inverse=True)[1]
    bayes, stand_mean = _script_combat(X.T, codes, cov, eb=True, t2_ddof=t2_ddof)
    comdata = bayes.T
    mu, sd = comdata.mean(axis=0), comdata.std(axis=0)
    pca = PCA().fit((comdata - mu) / sd)
    scores = pca.transform((comdata - mu) / sd).T
    npc = int(np.min(np.where(np.cumsum(np.round(pca.explained_variance_ratio_, 4)) > pct_var))) + 1
    npc = n_pc if n_pc > 0 else npc
    com, mean = _script_combat(scores[:npc], codes, np.zeros((len(codes), 0)), eb=False, t2_ddof=t2_ddof)
    scores[:npc] = com + mean
    return (scores.T @ pca.components_) * sd + mu + stand_mean.T, npc


def cohort(rng, n_per_site=60, n_feat=10, strength=1.5):
    """Three sites with location/scale effects; site 'b' adds a shared factor: a site-specific covariance."""
    site = np.repeat(np.array(["a", "b", "c"]), n_per_site)
    codes = np.unique(site, return_inverse=True)[1]
    age = rng.uniform(20, 80, len(site))
    sex = rng.integers(0, 2, len(site)).astype(float)
    loading = rng.uniform(0.5, 1.0, n_feat)
    factor = np.where(site == "b", strength, 0.0)[:, None] * rng.normal(size=(len(site), 1)) * loading
    X = (20 + 0.03 * np.outer(age, rng.normal(size=n_feat)) + np.outer(sex, rng.normal(0, 0.5, n_feat))
         + rng.normal(0, 1, (3, n_feat))[codes] + rng.uniform(0.7, 1.3, (3, n_feat))[codes]
         * rng.normal(size=(len(site), n_feat)) + factor)
    return X, site, pd.DataFrame({"age": age, "sex": sex})


@pytest.fixture(scope="module")
def data():
    return cohort(np.random.default_rng(11))


@pytest.mark.parametrize("n_pc", [None, 3])
def test_matches_the_authors_algorithm(data, n_pc):
    """Equal to the authors' script to 1e-8 once its EB prior variance t2 divides by n - 1, as their R package."""
    X, site, cov = data
    got = CovBat(n_pc=n_pc).fit(X, batch=site, covariates=cov)
    expected, npc = covbat_script(X, site, cov.to_numpy(), n_pc=n_pc or 0, t2_ddof=1)
    assert got.n_pc_ == npc
    np.testing.assert_allclose(got.transform(X, batch=site, covariates=cov), expected, rtol=0, atol=1e-8)
    script, _ = covbat_script(X, site, cov.to_numpy(), n_pc=n_pc or 0)  # the script as written: t2 over n
    assert 1e-6 < np.abs(script - expected).max() < 0.1


def _cov_gap(Y, site):
    """Largest Frobenius distance between a site's feature correlations and their mean over the sites."""
    covs = [np.corrcoef(Y[site == s].T) for s in np.unique(site)]
    pooled = np.mean(covs, axis=0)
    return max(float(np.linalg.norm(c - pooled)) for c in covs)


def test_removes_a_site_covariance_that_combat_leaves():
    X, site, cov = cohort(np.random.default_rng(5), n_per_site=150)
    train = np.arange(len(site)) % 3 != 0  # 2/3 to fit, 1/3 new subjects
    combat = ComBat().fit(X[train], batch=site[train], covariates=cov[train])
    covbat = CovBat().fit(X[train], batch=site[train], covariates=cov[train])
    gaps = {}
    for part, rows in (("train", train), ("new", ~train)):
        args = {"batch": site[rows], "covariates": cov[rows].reset_index(drop=True)}
        gaps[part] = [_cov_gap(Y, site[rows]) for Y in (X[rows], combat.transform(X[rows], **args),
                                                         covbat.transform(X[rows], **args))]
    # measured: training subjects 3.51 raw, 3.35 ComBat, 0.69 CovBat; new subjects 3.61, 3.43, 1.27
    for raw, after_combat, after_covbat in gaps.values():
        assert after_combat > 0.8 * raw and after_covbat < 0.45 * after_combat


def test_contract_reference_batch_and_json_round_trip(data, tmp_path):
    X, site, cov = data
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])], index=[f"s{i}" for i in range(len(X))])
    model = CovBat(ref_batch="a", n_pc=4)
    with pytest.raises(NotFittedError):
        model.transform(frame, batch=site, covariates=cov)
    assert clone(model).get_params() == model.get_params()
    cov = cov.set_axis(frame.index)
    out = model.fit_transform(frame, batch=site, covariates=cov)
    np.testing.assert_array_equal(out[site == "a"], frame[site == "a"])  # the reference batch is left as it is
    np.testing.assert_array_equal(out, model.transform(frame, batch=site, covariates=cov))
    shuffled = frame.columns[::-1]
    np.testing.assert_allclose(model.transform(frame[shuffled], batch=site, covariates=cov), out[shuffled], atol=1e-12)
    older = model.transform(frame, batch=site, covariates=cov.assign(age=cov.age + 10))
    assert not np.allclose(older[site != "a"], out[site != "a"])  # the new covariates are used
    again = CovBat.load(model.save(tmp_path / "covbat.json"))
    np.testing.assert_array_equal(again.transform(frame, batch=site, covariates=cov), out)
    with pytest.raises(HarmonizationError, match="batch 'z'"):
        model.transform(frame[:1], batch=["z"], covariates=cov[:1])
    with pytest.raises(HarmonizationError, match="not a harmony CovBat model"):
        CovBat.from_dict(model.combat_.to_dict())
    with pytest.raises(HarmonizationError, match="n_pc must be a whole number from 1 to"):
        CovBat(n_pc=99).fit(X, batch=site)
