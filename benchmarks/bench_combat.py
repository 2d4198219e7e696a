"""harmony's ComBat against neuroCombat 0.2.12 on the same data, in one process.

5,000 samples x 1,000 features x 10 sites (seeded), parametric empirical Bayes with one continuous
covariate. The covariate is rounded to float32 because neuroCombat casts continuous covariates to float32.
Last line: ``ratio=<neuroCombat time / harmony time> max_abs_diff=<largest |harmony - neuroCombat|>``.

Run: ``.venv/bin/python benchmarks/bench_combat.py [--samples N --features G --sites K --seed S]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from timing import best_of

from harmony import ComBat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the neuroCombat oracle lives with the tests
from tests.harmonize.oracle import neurocombat  # noqa: E402


def simulate(n_samples: int, n_features: int, n_sites: int, rng: np.random.Generator):
    """Features with a site-specific location and scale and an age effect."""
    site = np.array([f"site{k:02d}" for k in rng.integers(0, n_sites, n_samples)])
    age = rng.uniform(20, 80, n_samples).astype(np.float32).astype(float)
    codes = np.unique(site, return_inverse=True)[1]
    shift = rng.normal(0, 1, (n_sites, n_features))
    scale = rng.uniform(0.5, 2.0, (n_sites, n_features))
    X = (rng.normal(10, 2, n_features) + 0.03 * np.outer(age, rng.normal(size=n_features))
         + shift[codes] + scale[codes] * rng.normal(size=(n_samples, n_features)))
    return X, site, pd.DataFrame({"age": age})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--seed", type=int, default=20240)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    X, site, covariates = simulate(args.samples, args.features, args.sites, np.random.default_rng(args.seed))
    t_ours, ours = best_of(args.repeats, lambda: ComBat().fit_transform(X, batch=site, covariates=covariates))
    t_ref, ref = best_of(args.repeats, lambda: neurocombat(X, site, covariates))
    print(f"{args.samples} samples x {args.features} features x {args.sites} sites, parametric EB + 1 covariate")
    print(f"harmony ComBat: {t_ours:.3f} s   neuroCombat 0.2.12: {t_ref:.3f} s   (best of {args.repeats})")
    print(f"ratio={t_ref / t_ours:.2f} max_abs_diff={np.abs(ours - ref).max():.3g}")


if __name__ == "__main__":
    main()
