"""The HTML report from synthetic tables that follow harmony.schema: sections, escaping, figures, plot API."""

from __future__ import annotations

import base64
import html
import json
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from harmony.core import schema
from harmony.core.files import write_table
from harmony.core.manifest import NOT_RUN, build_manifest, now_utc, write_manifest
from harmony.harmonize import metrics as hm
from harmony.report.figures import (
    HEATMAP_TOP_N,
    figure_png,
    heatmap_features,
    pca_scores,
    plot_icc_distribution,
    plot_icc_heatmap,
    plot_pca,
    plot_site_effect,
    plot_truth_correlation,
)
from harmony.report.page import _truth_sentence, stable_features
from harmony.workflows.layout import FIGURES_DIR, FILES, load_run
from harmony.workflows.run import write_report

EVIL_CASE = "<script>alert(1)</script>"
EVIL_FEATURE = "original_glcm_<b>Bold</b>&amp"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KINDS = ("noise", "discretisation", "mask", "all")
N_FEATURES = 50  # more than HEATMAP_TOP_N, so the heatmap shows a subset


def synthetic_run(run_dir, *, sites=("A", "B", "C"), n_cases=12, harmonized=True, seed=0):
    """A run directory whose tables follow schema.py exactly, with a hostile case id and feature name."""
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


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    run_dir = synthetic_run(tmp_path_factory.mktemp("run"))
    path = write_report(run_dir)
    return run_dir, path, path.read_text(encoding="utf-8")


def test_every_section_present(written):
    run_dir, path, page = written
    assert path == run_dir / "report.html"
    for section in ("summary", "stability", "harmonization", "failures"):
        assert f'<section id="{section}">' in page
    for text in ("Provenance", "config hash", "pyradiomics-bhklab", "Stable features", "category and perturbation kind",
                 "Site effect per feature", "Cases by site", "Correlation with the ground truth",
                 "site_classifier_accuracy", "1 task(s) failed", "How to read this"):
        assert text in page, text
    assert page.count("How to read this") == 4
    # the heatmap is truncated to the most kind-dependent features and the caption says so
    assert f"Only the {HEATMAP_TOP_N} of {N_FEATURES} features" in page


def test_captions_state_what_the_tables_say(written):
    run_dir, _, page = written
    rel = pd.read_parquet(run_dir / FILES["reliability"])
    medians = (rel[(rel.metric == "ICC(A,1)") & (rel.perturbation != "all")]
               .groupby("perturbation")["estimate"].median().sort_values())
    assert f"{medians.index[0]} changes the features most" in page
    assert f"Median ICC(A,1): {medians.index[0]} {medians.iloc[0]:.2f}, " in page
    # raw p values are all < 1e-3, harmonized ones all >= 0.05 (see synthetic_run)
    assert f"anova: {N_FEATURES} of {N_FEATURES} features differ significantly between sites before, 0 after" in page
    assert "accuracy 0.95 before and 0.35 after (chance 0.33)" in page
    assert f"{N_FEATURES} of {N_FEATURES} pairs keep or gain correlation" in page


def test_case_ids_feature_names_and_config_are_escaped(written):
    _, _, page = written
    assert "<script>" not in page and "<b>Bold</b>" not in page and "synthetic <run>" not in page
    assert html.escape(EVIL_CASE) in page  # the failed case id, shown escaped
    assert html.escape(EVIL_FEATURE) in page  # the stable hostile feature, shown escaped
    assert "&lt;removed&gt;" in page


def test_figures_are_embedded_pngs_and_saved_beside_the_report(written):
    run_dir, _, page = written
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    names = {"icc_distribution", "icc_heatmap", "site_effect", "pca_raw", "pca_combat", "truth_correlation"}
    assert len(uris) == len(names) == page.count("<img ")
    for uri in uris:
        assert base64.b64decode(uri).startswith(PNG_MAGIC)
    saved = {p.stem: p.read_bytes() for p in (run_dir / FIGURES_DIR).glob("*.png")}
    assert set(saved) == names
    assert {base64.b64encode(b).decode() for b in saved.values()} == set(uris)
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network


def test_stable_table_lists_the_features_stable_under_every_kind(written):
    run_dir, _, page = written
    rel = pd.read_parquet(run_dir / FILES["reliability"])
    rows = rel[rel.metric == "ICC(A,1)"]
    expected = {f for f, group in rows.groupby("feature") if group.stable.all()}
    stable = stable_features(rel, {"config": {"reliability": {"icc": "ICC(A,1)"}}})
    assert set(stable[schema.FEATURE]) == expected
    assert stable[schema.ESTIMATE].is_monotonic_decreasing
    assert f"Stable features ({len(expected)} of {N_FEATURES})" in page


def test_single_site_run_without_harmonization(tmp_path):
    run_dir = synthetic_run(tmp_path / "one", sites=("only",), harmonized=False)
    page = write_report(run_dir).read_text()
    assert "Not run: no harmonized table in this run" in page
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["stages"] = {"harmonization": {NOT_RUN: "a single site in the cohort"}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert "Not run: a single site in the cohort" in write_report(run_dir).read_text()
    assert page.count("<img ") == 2


def test_tables_of_a_stage_not_run_this_time_are_not_reported(tmp_path):
    # an earlier run into the same directory left harmonization tables and figures behind
    run_dir = synthetic_run(tmp_path / "rerun")
    write_report(run_dir)
    assert (run_dir / FIGURES_DIR / "pca_combat.png").is_file()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["stages"] = {"harmonization": {NOT_RUN: "disabled in the config"}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    page = write_report(run_dir).read_text()
    assert "Not run: disabled in the config" in page and page.count("<img ") == 2
    assert {p.stem for p in (run_dir / FIGURES_DIR).glob("*.png")} == {"icc_distribution", "icc_heatmap"}
    assert load_run(run_dir)["harmonized"] is None


def test_plot_functions_take_ax_none_and_return_figures(written):
    run_dir, _, _ = written
    run = load_run(run_dir)
    assert matplotlib.get_backend().lower() == "agg"
    figs = [plot_icc_distribution(run["reliability"]),
            plot_icc_heatmap(run["reliability"], "CCC", top_n=5),
            plot_site_effect(run["site_effects"]),
            plot_pca(run["harmonized"], "combat"),
            plot_truth_correlation(run["truth_correlation"])]
    for fig in figs:
        assert isinstance(fig, Figure)
        assert figure_png(fig).startswith(PNG_MAGIC)
    # given an axis, the plot draws into it and returns its figure
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2)
    assert plot_pca(run["harmonized"], "raw", ax=axes[0]) is fig
    assert len(axes[0].collections) == 3  # one scatter per site
    plt.close(fig)


def test_heatmap_keeps_the_most_kind_dependent_features():
    rel = pd.DataFrame([{schema.FEATURE: f, schema.PERTURBATION: k, schema.METRIC: "ICC(A,1)",
                         schema.ESTIMATE: est}
                        for f, ests in {"flat": (0.9, 0.9), "wide": (0.1, 0.95), "mid": (0.5, 0.8)}.items()
                        for k, est in zip(("noise", "all"), ests)])
    matrix, truncated = heatmap_features(rel, "ICC(A,1)", top_n=2)
    assert truncated and set(matrix.index) == {"wide", "mid"}
    assert list(matrix.columns) == ["noise", "all"]


def test_pca_refuses_too_little_data():
    long = pd.DataFrame({schema.CASE_ID: ["a", "b"], schema.SITE: ["s", "t"], schema.VARIANT_ID: ["original"] * 2,
                         schema.REPEAT: [0, 0], schema.FEATURE: ["f", "f"], schema.VALUE: [1.0, 2.0],
                         schema.STAGE: ["raw", "raw"]})
    with pytest.raises(ValueError, match="needs >= 3 cases"):
        pca_scores(long, "raw")


def test_truth_caption_says_when_harmonization_lost_signal():
    def table(after):
        return pd.DataFrame([{schema.FEATURE: f"f{i}", hm.TRUTH: "truth_size", schema.STAGE: stage, schema.ESTIMATE: v}
                             for i, a in enumerate(after) for stage, v in (("raw", 0.5), ("combat", a))])

    assert _truth_sentence(table([0.6] * 4 + [0.1])).startswith("4 of 5 pairs keep")
    assert "most of the biology survives" in _truth_sentence(table([0.6] * 4 + [0.1]))
    assert "removed signal as well as site" in _truth_sentence(table([0.6] * 3 + [0.1] * 2))
