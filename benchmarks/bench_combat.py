"""harmony's ComBat family against its peers on the same data, in one process.

5,000 samples x 1,000 features x 10 sites (seeded), one continuous covariate (age, rounded to float32 because
neuroCombat casts continuous covariates to float32), parametric empirical Bayes. Each method against its peer:

- ``combat``: neuroCombat 0.2.12 (the same algorithm: identical values expected);
- ``gam``: combatlearn's ``method="gam"`` (B-spline covariate effects; its basis and penalty differ by design,
  so the difference is printed, not required to be small);
- ``covbat``: combatlearn's ``method="chen"`` (CovBat, 95% of the variance);
- ``nested``: combatlearn's ``NestedComBat`` over three acquisition variables (vendor, kernel, thickness)
  in the given order;
- ``gmm``: combatlearn's ``NestedComBat(gmm="batch")`` (a hidden batch from a Gaussian mixture), then the site.

Last line: ``ratio=<neuroCombat time / harmony ComBat time> max_abs_diff=<largest |harmony - neuroCombat|>``.
Timings depend on the BLAS threads and on other load; ``OPENBLAS_NUM_THREADS=1`` gives steadier numbers.

Run: ``.venv/bin/python benchmarks/bench_combat.py [--samples N --features G --sites K --seed S --methods a,b]``
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from timing import best_of

from harmony.harmonize.covbat import CovBat
from harmony.harmonize.gam import ComBatGAM
from harmony.harmonize.gmm import GMMComBat
from harmony.harmonize.methods import REGISTRY
from harmony.harmonize.nested import NestedComBat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the neuroCombat oracle lives with the tests
from tests.harmonize.oracle import neurocombat


def simulate(n_samples: int, n_features: int, n_sites: int, rng: np.random.Generator):
    """Features with a site-specific location and scale and an age effect; the sites' acquisition variables."""
    site = np.array([f"site{k:02d}" for k in rng.integers(0, n_sites, n_samples)])
    age = rng.uniform(20, 80, n_samples).astype(np.float32).astype(float)
    codes = np.unique(site, return_inverse=True)[1]
    shift = rng.normal(0, 1, (n_sites, n_features))
    scale = rng.uniform(0.5, 2.0, (n_sites, n_features))
    X = (rng.normal(10, 2, n_features) + 0.03 * np.outer(age, rng.normal(size=n_features))
         + shift[codes] + scale[codes] * rng.normal(size=(n_samples, n_features)))
    acquisition = pd.DataFrame({"vendor": np.array(["A", "B"])[codes % 2],
                                "kernel": np.array(["soft", "sharp"])[(codes // 2) % 2],
                                "thickness": np.array(["1mm", "2mm", "3mm"])[codes % 3]})
    return X, site, pd.DataFrame({"age": age}), acquisition


def peers(X, site, covariates, acquisition):
    """Per method: (harmony's run, the peer's name, the peer's run)."""
    from combatlearn import ComBat as LearnComBat
    from combatlearn import NestedComBat as LearnNested

    def learn(method: str, **kwargs):
        model = LearnComBat(batch=site, continuous_covariates=covariates, method=method, **kwargs)
        return np.asarray(model.fit_transform(X))

    def learn_nested(batch: pd.DataFrame, **kwargs):
        model = LearnNested(batch=batch, continuous_covariates=covariates, optimize_order=False, **kwargs)
        return np.asarray(model.fit_transform(X))

    with_site = acquisition.iloc[:, :0].assign(site=site)
    return {
        "combat": (lambda: REGISTRY["combat"].estimator().fit_transform(X, batch=site, covariates=covariates),
                   "neuroCombat 0.2.12", lambda: neurocombat(X, site, covariates)),
        "gam": (lambda: ComBatGAM(smooth={"age": {"alpha": 1.0}}).fit_transform(X, batch=site, covariates=covariates),
                "combatlearn gam", lambda: learn("gam", smooth_terms=["age"])),
        "covbat": (lambda: CovBat().fit_transform(X, batch=site, covariates=covariates),
                   "combatlearn chen", lambda: learn("chen", covbat_cov_thresh=0.95)),
        "nested": (lambda: NestedComBat(order=list(acquisition.columns)).fit_transform(X, batch=acquisition,
                                                                                        covariates=covariates),
                   "combatlearn NestedComBat", lambda: learn_nested(acquisition)),
        "gmm": (lambda: GMMComBat(order=["gmm", "site"]).fit_transform(X, batch=with_site, covariates=covariates),
                "combatlearn NestedComBat(gmm)", lambda: learn_nested(with_site, gmm="batch", random_state=0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--seed", type=int, default=20240)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of classic ComBat (the others: 1)")
    parser.add_argument("--methods", default=",".join(REGISTRY), help="comma-separated methods to time")
    args = parser.parse_args()

    X, site, covariates, acquisition = simulate(args.samples, args.features, args.sites,
                                                np.random.default_rng(args.seed))
    print(f"{args.samples} samples x {args.features} features x {args.sites} sites, parametric EB + 1 covariate")
    runs = peers(X, site, covariates, acquisition)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    chosen = ["combat"] + [m for m in methods if m != "combat"]  # ComBat is always run: its ratio is the last line
    results = {}
    for method in chosen:
        ours, peer_name, theirs = runs[method]
        repeats = args.repeats if method == "combat" else 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the peers' own warnings (e.g. float32 casts)
            t_ours, out_ours = best_of(repeats, ours)
            t_ref, out_ref = best_of(repeats, theirs)
        diff = float(np.abs(np.asarray(out_ours) - np.asarray(out_ref)).max())
        results[method] = (t_ref / t_ours, diff)
        print(f"{method:<7} harmony: {t_ours:8.3f} s   {peer_name}: {t_ref:8.3f} s   ratio {t_ref / t_ours:6.2f}   "
              f"max |harmony - peer| {diff:.3g}")
    ratio, diff = results["combat"]
    print(f"ratio={ratio:.2f} max_abs_diff={diff:.3g}")


if __name__ == "__main__":
    main()
