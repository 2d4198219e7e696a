"""The HTML report from synthetic tables that follow harmony.core.schema: sections, escaping, figures, plot API."""

from __future__ import annotations

import base64
import html
import json
import re
import subprocess
import sys

import pandas as pd
import pytest
from matplotlib.figure import Figure

from harmony.core import schema
from harmony.core.manifest import NOT_RUN
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
from tests.conftest import ROOT, features_table
from tests.report.conftest import EVIL_CASE, EVIL_FEATURE, N_FEATURES, PNG_MAGIC


@pytest.fixture(scope="module")
def written(synthetic_run, tmp_path_factory):
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
                 "site classifier accuracy (cross-validated)", "1 task(s) failed", "How to read this"):
        assert text in page, text
    assert page.count("How to read this") == 4
    # the heatmap is truncated to the most kind-dependent features and the caption says so
    assert f"Only the {HEATMAP_TOP_N} of {N_FEATURES} features" in page


def test_captions_state_what_the_tables_say(written):
    run_dir, _, page = written
    rel = pd.read_parquet(run_dir / FILES["reliability"])
    medians = (rel[(rel.metric == "ICC(A,1)") & (rel.perturbation != "all")]
               .groupby("perturbation")["ci_low"].median().sort_values())  # the judged value (ci_low)
    assert f"{medians.index[0]} changes the features most" in page
    assert (f"Median lower bound of the 95% confidence interval: {medians.index[0]} {medians.iloc[0]:.2f}, "
            in page)
    # raw p values are all < 1e-3, harmonized ones all >= 0.05 (see synthetic_run)
    assert (f"one-way ANOVA: {N_FEATURES} of {N_FEATURES} features differ significantly between sites before, 0 "
            "after") in page
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


def test_single_site_run_without_harmonization(synthetic_run, tmp_path):
    run_dir = synthetic_run(tmp_path / "one", sites=("only",), harmonized=False)
    page = write_report(run_dir).read_text()
    assert "Not run: no harmonized table in this run" in page
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["stages"] = {"harmonization": {NOT_RUN: "a single site in the cohort"}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert "Not run: a single site in the cohort" in write_report(run_dir).read_text()
    assert page.count("<img ") == 2


def test_tables_of_a_stage_not_run_this_time_are_not_reported(synthetic_run, tmp_path):
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
    figs = [plot_icc_distribution(run["reliability"]),
            plot_icc_heatmap(run["reliability"], "CCC", top_n=5),
            plot_site_effect(run["site_effects"]),
            plot_pca(run["harmonized"], "combat"),
            plot_truth_correlation(run["truth_correlation"])]
    for fig in figs:
        assert isinstance(fig, Figure) and fig.axes
        assert figure_png(fig).startswith(PNG_MAGIC)
    # given an axis, each plot draws into it and returns its figure
    fig = Figure()
    axes = fig.subplots(1, 5)
    assert plot_icc_distribution(run["reliability"], ax=axes[0]) is fig
    assert plot_icc_heatmap(run["reliability"], ax=axes[1]) is fig and axes[1].images
    assert plot_site_effect(run["site_effects"], ax=axes[2]) is fig and axes[2].collections
    assert plot_pca(run["harmonized"], "raw", ax=axes[3]) is fig
    assert len(axes[3].collections) == 3  # one scatter per site
    assert plot_truth_correlation(run["truth_correlation"], ax=axes[4]) is fig and axes[4].collections
    assert len(fig.axes) == 5 + 1  # no other axes but the heatmap's colour bar


#: In a fresh interpreter: a user's backend, then harmony's report imported and a report rendered.
_USER_BACKEND = """
import sys
import matplotlib
matplotlib.use("svg")
import harmony.report, harmony.report.figures, harmony.report.page, harmony.workflows.run
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
harmony.workflows.run.write_report(sys.argv[1])
import matplotlib.pyplot as plt
print(matplotlib.get_backend(), plt.get_fignums())
"""


def test_the_report_keeps_the_users_backend_and_leaves_no_pyplot_figure(synthetic_run, tmp_path):
    run_dir = synthetic_run(tmp_path / "run")
    done = subprocess.run([sys.executable, "-c", _USER_BACKEND, str(run_dir)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "[]"]
    assert (run_dir / "report.html").is_file()


def test_heatmap_keeps_the_most_kind_dependent_features():
    rel = pd.DataFrame([{schema.FEATURE: f, schema.PERTURBATION: k, schema.METRIC: "ICC(A,1)",
                         schema.ESTIMATE: est}
                        for f, ests in {"flat": (0.9, 0.9), "wide": (0.1, 0.95), "mid": (0.5, 0.8)}.items()
                        for k, est in zip(("noise", "all"), ests)])
    matrix, truncated = heatmap_features(rel, "ICC(A,1)", top_n=2)
    assert truncated and set(matrix.index) == {"wide", "mid"}
    assert list(matrix.columns) == ["noise", "all"]


def test_pca_refuses_too_little_data():
    long = features_table({("a", "f"): 1.0, ("b", "f"): 2.0}).assign(**{schema.STAGE: "raw"})
    with pytest.raises(ValueError, match="needs >= 3 cases"):
        pca_scores(long, "raw")


def test_truth_caption_says_when_harmonization_lost_signal():
    def table(after):
        return pd.DataFrame([{schema.FEATURE: f"f{i}", hm.TRUTH: "truth_size", schema.STAGE: stage, schema.ESTIMATE: v}
                             for i, a in enumerate(after) for stage, v in (("raw", 0.5), ("combat", a))])

    assert _truth_sentence(table([0.6] * 4 + [0.1])).startswith("4 of 5 pairs keep")
    assert "most of the biology survives" in _truth_sentence(table([0.6] * 4 + [0.1]))
    assert "removed signal as well as site" in _truth_sentence(table([0.6] * 3 + [0.1] * 2))
