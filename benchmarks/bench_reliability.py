"""ICC of 1000 features x 50 cases x 10 variants: harmony (vectorised) against pingouin looped per feature.

Both get the same long-format table (categorical feature, case and variant columns, float values) and
return all six ICC forms with their intervals; harmony in one call (best of 20), pingouin once per feature
over all features (the per-feature split is not timed), in this process. Last line:
``ratio=<pingouin seconds / harmony seconds> max_abs_diff=<largest ICC estimate difference, all six forms>``.

    .venv/bin/python benchmarks/bench_reliability.py [--features 1000] [--cases 50] [--variants 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import pingouin
from timing import best_of

from harmony import icc
from harmony.core.schema import (
    CASE_ID,
    ESTIMATE,
    FEATURE,
    ICC_METRICS,
    METRIC,
    VALUE,
    VARIANT_ID,
)


def make_data(n_features: int, n_cases: int, n_variants: int, seed: int = 0) -> pd.DataFrame:
    """Seeded features with a case effect, a variant bias and noise of feature-specific sizes."""
    rng = np.random.default_rng(seed)
    case = rng.normal(size=(n_features, n_cases, 1)) * rng.uniform(0.2, 3, size=(n_features, 1, 1))
    bias = rng.normal(scale=0.3, size=(n_features, 1, n_variants))
    noise = rng.normal(size=(n_features, n_cases, n_variants)) * rng.uniform(0.1, 2, size=(n_features, 1, 1))
    scale = 10.0 ** rng.uniform(-3, 4, size=(n_features, 1, 1))  # radiomic features span many magnitudes
    values = (case + bias + noise) * scale
    f, c, v = np.meshgrid(np.arange(n_features), np.arange(n_cases), np.arange(n_variants), indexing="ij")
    labels = {FEATURE: ("f", f), CASE_ID: ("c", c), VARIANT_ID: ("v", v)}
    # Label columns are categorical, as a long table's label columns should be (both tools get this table).
    return pd.DataFrame({**{name: pd.Categorical(np.char.add(prefix, codes.ravel().astype(str)))
                            for name, (prefix, codes) in labels.items()}, VALUE: values.ravel()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--variants", type=int, default=10)
    args = parser.parse_args()
    data = make_data(args.features, args.cases, args.variants)
    print(f"{args.features} features x {args.cases} cases x {args.variants} variants = {len(data)} rows")

    t_ours, ours = best_of(20, lambda: icc(data, CASE_ID, VARIANT_ID, VALUE, features=FEATURE))
    print(f"harmony.reliability.icc, one call (best of 20): {t_ours * 1e3:.1f} ms")
    as_text = data.assign(**{c: data[c].astype(str) for c in (FEATURE, CASE_ID, VARIANT_ID)})
    t_text, _ = best_of(20, lambda: icc(as_text, CASE_ID, VARIANT_ID, VALUE, features=FEATURE))
    print(f"  the same with text label columns (factorising them is most of it): {t_text * 1e3:.1f} ms; "
          "harmony's features tables hold their labels as categoricals, as this benchmark's input does")

    per_feature = dict(tuple(data.groupby(FEATURE, sort=True, observed=True)))  # splitting is not timed
    start = time.perf_counter()
    theirs = {name: pingouin.intraclass_corr(part, targets=CASE_ID, raters=VARIANT_ID, ratings=VALUE)
              for name, part in per_feature.items()}
    t_theirs = time.perf_counter() - start
    print(f"pingouin.intraclass_corr looped over all {len(theirs)} features: {t_theirs:.1f} s "
          f"({t_theirs / len(theirs) * 1e3:.1f} ms per feature)")

    reference = pd.concat([frame.assign(**{FEATURE: name}) for name, frame in theirs.items()])
    merged = ours.merge(reference, left_on=[FEATURE, METRIC], right_on=[FEATURE, "Type"], validate="1:1")
    if len(merged) != args.features * len(ICC_METRICS):
        raise SystemExit(f"expected {args.features * len(ICC_METRICS)} matched rows, got {len(merged)}")
    max_abs_diff = float(np.max(np.abs(merged[ESTIMATE] - merged["ICC"])))
    print(f"ratio with text label columns: {t_theirs / t_text:.0f}")
    print(f"ratio={t_theirs / t_ours:.0f} max_abs_diff={max_abs_diff:.2e}")


if __name__ == "__main__":
    main()
