"""The stability section states its rule and lists per kind; warnings on the page; the harmonization page."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from harmony.core import schema
from harmony.core.files import read_json
from harmony.core.manifest import MANIFEST_NAME
from harmony.harmonize import metrics as hm
from harmony.reliability.verdicts import rule_sentence, stable_by_perturbation
from harmony.report.figures import plot_icc_distribution, plot_site_effect
from harmony.report.page import readable_metric, render_harmonization_report
from harmony.workflows.layout import FILES
from harmony.workflows.run import write_report


@pytest.fixture(scope="module")
def page(synthetic_run, tmp_path_factory):
    run_dir = synthetic_run(tmp_path_factory.mktemp("run"))
    manifest = read_json(run_dir / MANIFEST_NAME)
    manifest.setdefault("stages", {})["reliability"] = {"warnings": [
        {"why": "GUARD LOWERED: reliability on 2 cases", "feature": None, "site": None, "case": None,
         "kind": "harmony", "count": 1},
        {"why": "values clipped", "feature": "original_firstorder_F01", "site": "B", "case": None,
         "kind": "harmony", "count": 6}]}
    (run_dir / MANIFEST_NAME).write_text(json.dumps(manifest))
    return run_dir, write_report(run_dir).read_text(encoding="utf-8")


def _section(page: str, name: str) -> str:
    return page[page.index(f'<section id="{name}">'):].split("</section>")[0]


def test_the_stability_section_states_the_rule_first_and_names_the_quantity_by_each_figure(page):
    _, page_html = page
    stability = _section(page_html, "stability")
    first = re.search(r'<p class="rule">(.*?)</p>', stability).group(1)
    assert first == html.escape(rule_sentence())
    assert stability.index('class="rule"') < stability.index("<figure")
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", stability)
    assert len(captions) == 2 and all("lower bound of the 95% confidence interval" in c for c in captions)
    assert "Counted on the lower bound of the 95% confidence interval of ICC(A,1)" in stability


def test_the_stable_lists_per_kind_and_the_links_to_the_csvs(page):
    run_dir, page_html = page
    stability = _section(page_html, "stability")
    assert '<a href="reliability/stable_by_perturbation.csv">' in stability
    assert '<a href="reliability/stable_features.csv">' in stability
    wide = stable_by_perturbation(pd.read_parquet(run_dir / FILES["reliability"]))
    listed = dict(re.findall(r'<tr><td>([^<]+)</td><td class="num">(\d+)</td>', stability))
    expected = {("all variants pooled (the whole design)" if k == "all" else k): str(int(wide[k].sum()))
                for k in wide.columns if k != schema.FEATURE}
    assert listed == expected
    assert len(set(expected.values())) > 1  # the kinds differ: a per-kind list says something


def test_warnings_are_listed_once_and_a_lowered_guard_is_loud(page):
    _, page_html = page
    assert page_html.index('<div class="loud">GUARD LOWERED: reliability on 2 cases</div>') < page_html.index(
        '<section id="summary">')
    warnings_ = _section(page_html, "warnings")
    assert "<li>feature &#x27;original_firstorder_F01&#x27;, site &#x27;B&#x27;: values clipped (6 times)</li>" \
        in warnings_
    assert '<a href="#warnings">Warnings</a>' in page_html


def test_band_labels_stay_apart_when_the_axis_goes_negative():
    rel = pd.DataFrame({"feature": [f"f{i}" for i in range(6)], "perturbation": "noise", "metric": "ICC(A,1)",
                        "estimate": 0.5, "ci_low": [-0.95, -0.5, 0.2, 0.6, 0.8, 0.95], "ci_high": 1.0})
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plot_icc_distribution(rel)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    labels = [t for t in fig.axes[0].texts if t.get_text() in ("poor", "moderate", "good", "excellent")]
    assert [t.get_text() for t in labels] == ["poor", "moderate", "good", "excellent"]
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)


def _effects(after: float) -> pd.DataFrame:
    rows = []
    for i in range(10):
        for test in ("anova", "anderson_darling"):
            for stage, p in (("raw", 10.0 ** -(5 + i)), ("combat", after)):
                rows.append({schema.FEATURE: f"f{i}", schema.STAGE: stage, hm.TEST: test, hm.PVALUE_BH: p})
    return pd.DataFrame(rows)


def test_the_site_effect_axes_are_scaled_to_their_own_points():
    ax = plot_site_effect(_effects(after=0.6)).axes[0]
    assert ax.get_xlim()[1] == pytest.approx(14 * 1.15)
    assert ax.get_ylim()[1] == pytest.approx(-np.log10(0.05) * 1.15)  # after-points near 0: a short axis
    assert any("capped" in t.get_text() for t in ax.get_legend().get_texts())


def test_summary_names_are_readable():
    assert readable_metric("mean_abs_correlation[truth_radius_mm]") == "mean |r| with the truth: radius (mm)"
    assert readable_metric("anderson_darling_fraction_significant") == (
        "share of features differing between sites (Anderson-Darling (k-sample), adjusted p < 0.05)")
    assert readable_metric("something_new") == "something_new"


def test_the_harmonization_page_of_a_table_alone(tmp_path, synthetic_run):
    run_dir = synthetic_run(tmp_path / "run")
    tables = {key: pd.read_parquet(run_dir / FILES[key]) for key in
              ("harmonized", "site_effects", "truth_correlation", "harmonization_summary")}
    tables["summary"] = tables.pop("harmonization_summary")
    page_html = render_harmonization_report(tables, tmp_path / "figures", {"warnings": [
        {"why": "only 4 subjects", "site": "A", "feature": None, "case": None, "kind": "harmony", "count": 1}]})
    assert page_html.count("<img ") == 4 and len(list((tmp_path / "figures").glob("*.png"))) == 4
    assert "mean_abs_correlation[" not in page_html and "site classifier accuracy (cross-validated)" in page_html
    assert "site &#x27;A&#x27;: only 4 subjects" in page_html
    assert isinstance(plot_site_effect(tables["site_effects"]), Figure)
