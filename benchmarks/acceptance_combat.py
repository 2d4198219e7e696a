"""Acceptance numbers of issue 9: ComBat fitted on training subjects, applied to held-back subjects.

Two cohorts, each split into training (2/3) and held-back (1/3) subjects, stratified by site:

- ``features``: the feature-level simulation (:func:`harmony.harmonize.simulation.simulate_site_features`,
  4 scanners, location and scale site effects, known truth), plus its skewed variant, which compares the
  transforms;
- ``images`` (``--images``): the image-based phantom cohort (``phantoms/cohort_demo.toml`` through
  :func:`harmony.phantoms.simulate_cohort`), extracted with pyradiomics (``harmony.engine.run_tasks``).

For each part and stage it prints the fraction of features with a site effect (BH-corrected, per test),
the site classifier's cross-validated accuracy (and chance; for harmonized training subjects ComBat is
refitted inside the folds), and the mean |correlation| of the features with each truth.

Run: ``.venv/bin/python benchmarks/acceptance_combat.py [--images] [--out DIR]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from harmony.core import schema
from harmony.harmonize.combat import ComBat
from harmony.harmonize.features import harmonization_inputs
from harmony.harmonize.metrics import (
    SIGNIFICANT,
    TEST,
    site_classifier_accuracy,
    site_effects,
    truth_correlations,
)
from harmony.harmonize.simulation import AGE, GROUP, simulate_site_features


def _long(wide: pd.DataFrame, site: pd.Series) -> pd.DataFrame:
    long = wide.rename_axis(index=schema.CASE_ID, columns=schema.FEATURE).stack().rename(schema.VALUE).reset_index()
    return long.assign(**{schema.SITE: long[schema.CASE_ID].map(site)})


def measure(values: pd.DataFrame, site: pd.Series, truth: pd.DataFrame, classifier_input: pd.DataFrame,
            harmonizer: ComBat | None, covariates: pd.DataFrame | None) -> dict[str, float]:
    long = _long(values, site)
    fractions = site_effects(long).groupby(TEST)[SIGNIFICANT].mean()
    clf = site_classifier_accuracy(_long(classifier_input, site), harmonizer=harmonizer, covariates=covariates)
    out = {f"{test}": float(fractions[test]) for test in ("welch_anova", "kruskal_wallis", "anderson_darling")}
    out.update(classifier=clf["accuracy"], chance=clf["chance"])
    if truth.shape[1]:
        r = truth_correlations(long, truth)
        out.update({f"|r|{t.removeprefix(schema.TRUTH_PREFIX)}": float(g[schema.ESTIMATE].abs().mean())
                    for t, g in r.groupby("truth")})
    return out


def train_held_back(features: pd.DataFrame, cases: pd.DataFrame, covariates: list[str], *,
                    transform: str | None = None, seed: int = 0) -> pd.DataFrame:
    """Metrics before/after for training and held-back subjects; the model sees training subjects only."""
    _, X, site, cov = harmonization_inputs(features, cases, covariates=covariates)
    X = X.loc[:, X.std() > 0]
    rng = np.random.default_rng(seed)
    held = np.zeros(len(X), bool)
    for s in site.unique():
        idx = np.flatnonzero(site.to_numpy() == s)
        held[rng.choice(idx, size=len(idx) // 3, replace=False)] = True
    model = ComBat(feature_transform=transform).fit(X[~held], batch=site[~held],
                                                    covariates=None if cov is None else cov[~held])
    truth = cases.set_index(schema.CASE_ID)[schema.truth_columns(cases.columns)]
    rows = []
    for part, mask in (("training", ~held), ("held-back", held)):
        after = model.transform(X[mask], batch=site[mask], covariates=None if cov is None else cov[mask])
        for stage, values in (("raw", X[mask]), ("combat", after)):
            # training subjects: the classifier refits ComBat inside its folds (see site_classifier_accuracy)
            in_fold = part == "training" and stage == "combat"
            clf_args = (X[mask], ComBat(feature_transform=transform), cov) if in_fold else (values, None, None)
            rows.append({"part": part, "stage": stage, "n": int(mask.sum()),
                         **measure(values, site, truth, *clf_args)})
    return pd.DataFrame(rows)


def image_cohort(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from harmony.extraction.engine import run_tasks
    from harmony.extraction.params import load_params
    from harmony.phantoms.cohort import simulate_cohort
    from harmony.phantoms.specs import load_cohort_spec

    root = Path(__file__).resolve().parents[1]
    spec = load_cohort_spec(root / "phantoms" / "cohort_demo.toml")
    cases = simulate_cohort(spec, out, progress=False)
    run = run_tasks(cases, None, load_params(root / "phantoms" / "cohort_params.yaml"), out / "extraction",
                    progress=False)
    features, failures = run.features, run.failures
    if len(failures):
        print(f"{len(failures)} case(s) failed extraction; they are left out")
    return cases, features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", action="store_true", help="also simulate, extract and harmonize cohort_demo")
    parser.add_argument("--out", default=None, help="where the image cohort is written (default: a temp dir)")
    args = parser.parse_args()
    pd.set_option("display.width", 200)

    cases, features = simulate_site_features(n_cases=600, n_features=60, rng=np.random.default_rng(2024))
    print("feature-level cohort: 600 subjects, 60 features, 4 scanners (covariates age, group)")
    print(train_held_back(features, cases, [AGE, GROUP]).round(3).to_string(index=False))

    cases, features = simulate_site_features(n_cases=600, n_features=60, skewed=True, rng=np.random.default_rng(2025))
    print("\nskewed feature-level cohort (site-specific multiplicative + shape effects), by transform:")
    for transform in (None, "log", "yeo-johnson", "quantile-normal"):
        table = train_held_back(features, cases, [AGE, GROUP], transform=transform)
        print(f"transform={transform}")
        print(table.round(3).to_string(index=False))

    if args.images:
        out = Path(args.out or tempfile.mkdtemp(prefix="harmony-acceptance-"))
        cases, features = image_cohort(out)
        n_features = features[schema.FEATURE].nunique()
        print(f"\nimage cohort {out}: {len(cases)} cases, {n_features} pyradiomics features, "
              f"{cases[schema.SITE].nunique()} scanners (covariates age, group)")
        print(train_held_back(features, cases, ["age", "group"]).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
