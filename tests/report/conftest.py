"""The report tests' synthetic run: tables that follow harmony's schemas exactly, with hostile names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harmony.core import schema
from harmony.core.files import write_table
from harmony.core.manifest import build_manifest, now_utc, write_manifest
from harmony.harmonize import metrics as hm
from harmony.workflows.layout import FILES

EVIL_CASE = "<script>alert(1)</script>"
EVIL_FEATURE = "original_glcm_<b>Bold</b>&amp"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KINDS = ("noise", "discretisation", "mask", "all")
N_FEATURES = 50  # more than HEATMAP_TOP_N, so the heatmap shows a subset


def make_synthetic_run(run_dir, *, sites=("A", "B", "C"), n_cases=12, harmonized=True, seed=0):
    """A run directory whose tables follow harmony.core.schema exactly, with a hostile case id and feature name."""
    rng = np.random.default_rng(seed)
    case_ids = [EVIL_CASE] + [f"case{i:02d}" for i in range(1, n_cases)]
    site_of = {c: sites[i % len(sites)] for i, c in enumerate(case_ids)}
    features = [EVIL_FEATURE] + [f"original_firstorder_F{i:02d}" for i in range(1, N_FEATURES)]
    cases = pd.DataFrame({schema.CASE_ID: case_ids, schema.SITE: [site_of[c] for c in case_ids],
                          schema.IMAGE: [f"/x/{i}.nrrd" for i in range(n_cases)],
                          schema.MASK: [f"/x/{i}_m.nrrd" for i in range(n_cases)],
                          "truth_size": rng.normal(size=n_cases)})
    variants = pd.DataFrame({schema.VARIANT_ID: [schema.ORIGINAL, "v1", "v2"],
                             schema.KIND: ["original", "noise", "mask"],
                             schema.PARAMS: ["[]", '[{"kind": "noise"}]', '[{"kind": "erode_dilate"}]'],
                             schema.SEED: [0, 7, 0]})
    truth = cases["truth_size"].to_numpy()
    rows = []
    for variant in variants[schema.VARIANT_ID]:
        for j, feature in enumerate(features):
            values = truth * (j % 5 + 1) + rng.normal(scale=0.3, size=n_cases)
            values += np.array([sites.index(site_of[c]) for c in case_ids]) * 2.0
            rows += [{schema.CASE_ID: c, schema.SITE: site_of[c], schema.VARIANT_ID: variant, schema.REPEAT: 0,
                      schema.FEATURE: feature, schema.VALUE: v} for c, v in zip(case_ids, values)]
    feats = pd.DataFrame(rows)
    failures = pd.DataFrame({schema.CASE_ID: [EVIL_CASE], schema.VARIANT_ID: ["v9"], schema.REPEAT: [0],
                             schema.ERROR: ["PerturbationError: erosion <removed> 90% of the mask"]})
    rel = []
    for feature in features:
        for kind in KINDS:
            est = float(rng.uniform(0.2, 1.0))
            low = est - 0.1
            category = ("excellent" if low >= 0.9 else "good" if low >= 0.75 else "moderate" if low >= 0.5 else "poor")
            for metric in ("ICC(A,1)", "CCC"):
                rel.append({schema.FEATURE: feature, schema.PERTURBATION: kind, schema.METRIC: metric,
                            schema.ESTIMATE: est, schema.CI_LOW: low, schema.CI_HIGH: min(est + 0.05, 1.0),
                            schema.N_CASES: n_cases, schema.N_VARIANTS: 3, schema.CATEGORY: category,
                            schema.STABLE: low >= 0.75, schema.REASON: f"lower bound {low:.2f} vs 0.75"})
    reliability = pd.DataFrame(rel)
    # the hostile feature is stable under every kind, so it appears in the stable-features table
    evil = reliability[schema.FEATURE] == EVIL_FEATURE
    reliability.loc[evil, [schema.ESTIMATE, schema.CI_LOW, schema.CI_HIGH]] = [0.97, 0.93, 0.99]
    reliability.loc[evil, schema.STABLE] = True
    reliability.loc[evil, schema.CATEGORY] = "excellent"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_table(cases, run_dir / FILES["cases"], schema.CASES)
    write_table(variants, run_dir / FILES["variants"], schema.VARIANTS)
    write_table(feats, run_dir / FILES["features"], schema.FEATURES)
    write_table(failures, run_dir / FILES["failures"], schema.FAILURES)
    write_table(reliability, run_dir / FILES["reliability"], schema.RELIABILITY)
    if harmonized:
        combat = feats.copy()
        combat[schema.VALUE] = combat[schema.VALUE] - combat[schema.SITE].map({s: 2.0 * i for i, s in enumerate(sites)})
        both = pd.concat([feats.assign(stage="raw"), combat.assign(stage="combat")], ignore_index=True)
        write_table(both, run_dir / FILES["harmonized"], schema.HARMONIZED)
        effect = []
        for f in features:
            for t in ("anova", "kruskal_wallis"):
                for s in schema.STAGES:
                    p = float(rng.uniform(1e-8, 1e-3) if s == "raw" else rng.uniform(0.05, 1))
                    effect.append({schema.FEATURE: f, schema.STAGE: s, hm.TEST: t, hm.STATISTIC: 1.0, hm.PVALUE: p,
                                   hm.PVALUE_BH: p, hm.SIGNIFICANT: p < 0.05})
        write_table(pd.DataFrame(effect), run_dir / FILES["site_effects"], hm.SITE_EFFECTS)
        corr = pd.DataFrame([{schema.FEATURE: f, hm.TRUTH: "truth_size", schema.STAGE: s,
                              schema.ESTIMATE: float(rng.uniform(0.3, 0.6) if s == "raw" else rng.uniform(0.6, 0.95))}
                             for f in features for s in schema.STAGES])
        write_table(corr, run_dir / FILES["truth_correlation"], hm.TRUTH_CORRELATION)
        summary = pd.DataFrame({schema.STAGE: list(schema.STAGES) * 2,
                                schema.METRIC: ["site_classifier_accuracy"] * 2 + ["site_classifier_chance"] * 2,
                                schema.ESTIMATE: [0.95, 0.35, 1 / 3, 1 / 3]})
        write_table(summary, run_dir / FILES["harmonization_summary"], hm.SUMMARY)
    config = {"experiment": {"name": "synthetic <run>", "description": "A synthetic run & its tables."},
              "reliability": {"icc": "ICC(A,1)"}}
    write_manifest(run_dir, build_manifest(command="run", config=config, seeds={"experiment": seed},
                                           started=now_utc(), tasks={"total": 36, "done": 35, "failed": 1},
                                           wall_seconds=12.5))
    return run_dir


@pytest.fixture(scope="session")
def synthetic_run():
    """:func:`make_synthetic_run`: ``synthetic_run(run_dir, sites=..., n_cases=..., harmonized=..., seed=...)``."""
    return make_synthetic_run
