"""The ComBat family's benchmark cases, for ``bench_combat.py``: each method and its peer on the same data.

``family_cases(X, site, covariates, rng)`` returns ``(name, run_harmony, peer_name, run_peer)`` tuples; each
``run_*`` takes no argument and returns the harmonized samples x features array. The peers are combatlearn
2.3's (neuroHarmonize, the GAM's reference, needs numpy < 2 and cannot run in this environment; its values are
tested from stored outputs in tests/harmonize/test_gam.py). combatlearn differs by design (its empirical
Bayes pools priors across batches per feature; its CovBat takes the PCA of the unstandardised data with EB on
the scores; its GAM is unpenalised), so the values are not expected to agree: compare the times.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from harmony import ComBatGAM, CovBat, GMMComBat, NestedComBat

__all__ = ["family_cases"]


def family_cases(X: np.ndarray, site: np.ndarray, covariates: pd.DataFrame,
                 rng: np.random.Generator) -> list[tuple[str, Callable, str | None, Callable | None]]:
    """The GAM, CovBat, Nested and GMM ComBat runs and their combatlearn counterparts on ``X``.

    Nested ComBat gets two more acquisition parameters drawn from ``rng`` (a kernel of 2 levels and a slice
    thickness of 3) besides ``site``.
    """
    try:
        import combatlearn
    except ImportError:  # the peer is a test dependency
        combatlearn = None
    frame = pd.DataFrame(X)
    acquisition = pd.DataFrame({"site": site, "kernel": rng.choice(["soft", "sharp"], len(site)),
                                "thickness": rng.choice(["1mm", "3mm", "5mm"], len(site))})
    smooth = covariates.columns[0]
    cases = [
        ("ComBatGAM", lambda: ComBatGAM(smooth={smooth: {}}).fit_transform(X, batch=site, covariates=covariates),
         "combatlearn gam", lambda: combatlearn.ComBat(batch=pd.Series(site), method="gam", smooth_terms=[smooth],
                                                       continuous_covariates=covariates).fit_transform(frame)),
        ("CovBat", lambda: CovBat().fit_transform(X, batch=site, covariates=covariates),
         "combatlearn chen", lambda: combatlearn.ComBat(batch=pd.Series(site), method="chen",
                                                        continuous_covariates=covariates).fit_transform(frame)),
        ("NestedComBat", lambda: NestedComBat().fit_transform(X, batch=acquisition, covariates=covariates),
         "combatlearn NestedComBat", lambda: combatlearn.NestedComBat(
             batch=acquisition, continuous_covariates=covariates).fit_transform(frame)),
        ("GMMComBat", lambda: GMMComBat(random_state=0).fit_transform(X, batch=site, covariates=covariates),
         "combatlearn NestedComBat(gmm='batch')", lambda: combatlearn.NestedComBat(
             batch=pd.DataFrame({"site": site}), continuous_covariates=covariates, gmm="batch",
             random_state=0).fit_transform(frame)),
    ]
    if combatlearn is None:
        return [(name, ours, None, None) for name, ours, _, _ in cases]
    return [(name, ours, peer, lambda run=run: np.asarray(run())) for name, ours, peer, run in cases]
