"""Text from data is drawn literally: sites, features and kinds that look like mathtext or HTML never break a
figure or the page (the report of a run whose site is called ``$\\broken$`` is written)."""

from __future__ import annotations

import pandas as pd

from harmony.report.figures import figure_png, plot_icc_distribution, plot_icc_heatmap, plot_pca
from harmony.workflows.layout import FIGURES_DIR, load_run
from harmony.workflows.run import write_report
from tests.report.conftest import PNG_MAGIC

MARKUP_SITES = ("$\\broken$", "$x^2$", "<i>C</i>")


def test_a_report_with_mathtext_and_html_site_names_is_written_literally(synthetic_run, tmp_path):
    run_dir = synthetic_run(tmp_path / "run", sites=MARKUP_SITES)
    page = write_report(run_dir).read_text()
    assert "<i>C</i>" not in page and page.rstrip().endswith("</html>")
    legend = plot_pca(load_run(run_dir)["harmonized"], "raw").axes[0].get_legend()
    assert sorted(t.get_text() for t in legend.get_texts()) == sorted(MARKUP_SITES)
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in (run_dir / FIGURES_DIR).glob("*.png"))
    assert {p.name for p in (run_dir / FIGURES_DIR).glob("pca_*.png")} == {"pca_raw.png", "pca_combat.png"}


def test_feature_and_kind_names_are_drawn_as_written():
    rel = pd.DataFrame({"feature": ["$\\broken$", "$\\broken$", "b_{x}", "b_{x}"],
                        "perturbation": ["$\\frac{", "all"] * 2, "metric": "ICC(A,1)",
                        "estimate": [0.95, 0.9, 0.4, 0.6]})
    heatmap = plot_icc_heatmap(rel)
    assert figure_png(heatmap).startswith(PNG_MAGIC)
    assert [t.get_text() for t in heatmap.axes[0].get_yticklabels()] == ["$\\broken$", "b_{x}"]
    assert figure_png(plot_icc_distribution(rel)).startswith(PNG_MAGIC)
