"""The run report: one self-contained HTML page rendered from a run's tables and manifest."""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harmony.core import schema
from harmony.core.manifest import NOT_RUN
from harmony.core.notices import Notice
from harmony.harmonize import metrics as hm
from harmony.reliability.guards import study_size_sentence
from harmony.reliability.settings import ALL as ALL_PERTURBATIONS
from harmony.reliability.settings import resolve_settings
from harmony.reliability.verdicts import (
    feature_verdicts,
    judged_words,
    rule_sentence,
    stable_by_perturbation,
    summary_counts,
)
from harmony.report.figures import (
    HEATMAP_TOP_N,
    _kinds_of,
    figure_png,
    heatmap_features,
    judged_rows,
    plot_icc_distribution,
    plot_icc_heatmap,
    plot_pca,
    plot_site_effect,
    plot_truth_correlation,
    primary_metric,
)

__all__ = ["WORST_PERTURBATION", "TABLE_ROW_LIMIT", "stable_features", "render_report", "notices_html",
           "readable_metric", "render_harmonization_report"]

#: Column of reliability.feature_verdicts naming the perturbation of a feature's weakest check.
WORST_PERTURBATION = "worst_perturbation"
#: Most rows an HTML table of the report shows; the full table is in the run directory.
TABLE_ROW_LIMIT = 200


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


# -- HTML ---------------------------------------------------------------------------------------------

_CSS = """

:root { --ink:#1d2733; --muted:#5b6b7c; --line:#dde3ea; --accent:#1f4e79; --soft:#f5f8fb; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.55 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--ink); background:#eef2f6; }
header { background:var(--accent); color:white; padding:26px 40px 20px; }
header h1 { margin:0 0 4px; font-size:26px; font-weight:600; }
header p { margin:0; opacity:.85; }
nav { background:white; border-bottom:1px solid var(--line); padding:10px 40px; position:sticky; top:0; }
nav a { color:var(--accent); text-decoration:none; margin-right:22px; font-weight:500; }
main { max-width:1100px; margin:0 auto; padding:24px 24px 60px; }
section { background:white; border:1px solid var(--line); border-radius:8px; padding:22px 28px; margin:0 0 22px; }
h2 { margin:0 0 10px; font-size:21px; color:var(--accent); }
h3 { margin:22px 0 8px; font-size:16px; }
.read { background:var(--soft); border-left:4px solid var(--accent); padding:10px 14px; margin:8px 0 16px;
        color:#2c3e50; }
.read b { color:var(--accent); }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin:6px 0 8px; }
.card { flex:1 1 130px; border:1px solid var(--line); border-radius:6px; padding:10px 14px; background:var(--soft); }
.card .n { font-size:24px; font-weight:600; color:var(--accent); }
.card .l { font-size:12px; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; }
figure { margin:12px 0; text-align:center; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px; }
figcaption { font-size:13px; color:var(--muted); margin-top:6px; }
.pair { display:flex; flex-wrap:wrap; gap:10px; justify-content:center; }
.pair figure { flex:1 1 420px; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { padding:5px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:var(--soft); font-weight:600; position:sticky; top:0; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
tbody tr:nth-child(even) { background:#fafbfc; }
.scroll { max-height:420px; overflow:auto; border:1px solid var(--line); border-radius:4px; }
code, pre { font-family:"SFMono-Regular", Consolas, "Liberation Mono", monospace; font-size:12.5px; }
pre { background:var(--soft); padding:12px; border-radius:4px; overflow:auto; max-height:360px; }
.muted { color:var(--muted); }
.ok { color:#1e7b34; font-weight:600; } .bad { color:#b03a2e; font-weight:600; }
.rule { font-weight:600; margin:4px 0 12px; }
.loud { background:#fdecea; border:2px solid #b03a2e; color:#7b1f16; padding:12px 16px; border-radius:6px;
        margin:0 0 22px; font-weight:600; }
ul.notices li { margin:4px 0; }
footer { text-align:center; color:var(--muted); font-size:12px; padding:10px; }
"""


def _table(frame: pd.DataFrame, numeric: Sequence[str] = (), limit: int = TABLE_ROW_LIMIT, scroll: bool = True) -> str:
    shown = frame.head(limit)
    head = "".join(f'<th class="{"num" if c in numeric else ""}">{_e(c)}</th>' for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = "".join(f'<td class="{"num" if c in numeric else ""}">{_e(_fmt(v))}</td>'
                        for c, v in zip(shown.columns, row))
        body.append(f"<tr>{cells}</tr>")
    out = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    if scroll:
        out = f'<div class="scroll">{out}</div>'
    if len(frame) > limit:
        out += (f'<p class="muted">Showing the first {limit} of {len(frame)} rows; the full table is in the run '
                "directory.</p>")
    return out


def _read(text: str) -> str:
    return f'<div class="read"><b>How to read this.</b> {text}</div>'


def _card(value: Any, label: str) -> str:
    return f'<div class="card"><div class="n">{_e(value)}</div><div class="l">{_e(label)}</div></div>'


class _Figures:
    """Saves each figure as ``<run>/figures/<name>.png`` and returns its ``<figure>`` HTML with a data URI."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.saved: list[Path] = []

    def __call__(self, name: str, fig: Figure, caption: str, alt: str) -> str:
        png = figure_png(fig)
        path = self.directory / f"{name}.png"
        self.directory.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        self.saved.append(path)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        return (f'<figure><img src="{uri}" alt="{_e(alt)}"><figcaption>{_e(caption)}</figcaption></figure>')


def _summary_section(run: Mapping[str, Any]) -> str:
    manifest = run["manifest"]
    tasks = manifest.get("tasks") or {}
    cases, features, reliability = run["cases"], run["features"], run["reliability"]
    cards = []
    if cases is not None:
        cards += [_card(len(cases), "cases"), _card(cases[schema.SITE].nunique(), "sites")]
    if run["variants"] is not None:
        cards.append(_card(len(run["variants"]), "variants (incl. original)"))
    if features is not None:
        cards.append(_card(features[schema.FEATURE].nunique(), "features"))
    if tasks:
        cards.append(_card(f"{tasks.get('done', '?')}/{tasks.get('total', '?')}", "extractions done"))
    failures = run["failures"]
    cards.append(_card(0 if failures is None else len(failures), "failed tasks"))
    if reliability is not None and len(reliability):
        cards.append(_card(len(stable_features(reliability, manifest)), "stable features"))
    config = manifest.get("config") or {}
    description = (config.get("experiment") or {}).get("description", "") if isinstance(config, Mapping) else ""
    versions = manifest.get("versions") or {}
    provenance = [
        ("config file", config.get("_source", "–") if isinstance(config, Mapping) else "–"),
        ("config hash", manifest.get("config_hash", "–")),
        ("seeds", json.dumps(manifest.get("seeds", {}), sort_keys=True)),
        ("started", manifest.get("started", "–")),
        ("finished", manifest.get("finished", "–")),
        ("wall time", f"{manifest['wall_seconds']:.1f} s" if isinstance(manifest.get("wall_seconds"), (int, float))
         else "–"),
        ("tasks", json.dumps(tasks, sort_keys=True)),
        ("pyradiomics", f"{versions.get('pyradiomics_distribution', '?')} {versions.get('pyradiomics', '?')}"),
        ("platform", manifest.get("platform", "–")),
    ]
    prov = pd.DataFrame(provenance, columns=["item", "value"])
    vers = pd.DataFrame(sorted(versions.items()), columns=["package", "version"])
    return (
        '<section id="summary"><h2>Run summary</h2>'
        + (f"<p>{_e(description)}</p>" if description else "")
        + _read("The cards count what went into this run. Everything below is computed from the tables in the "
                "run directory; the provenance lists what is needed to reproduce it exactly (same config hash, "
                "seeds and package versions give the same numbers).")
        + f'<div class="cards">{"".join(cards)}</div>'
        + "<h3>Provenance</h3>" + _table(prov, scroll=False)
        + "<details><summary>Package versions</summary>" + _table(vers, scroll=False) + "</details>"
        + "<details><summary>Resolved configuration</summary><pre>"
        + _e(json.dumps(config, indent=2, sort_keys=True, default=str)) + "</pre></details></section>"
    )


def _reliability_settings(manifest: Mapping[str, Any] | None) -> dict[str, Any]:
    return resolve_settings(((manifest or {}).get("config") or {}).get("reliability") or {})


def stable_features(reliability: pd.DataFrame, manifest: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The stable features' verdict rows, best first.

    The rows of :func:`~harmony.reliability.verdicts.feature_verdicts` with the run's ``[reliability]``
    settings; each describes the feature's weakest check.

    Parameters
    ----------
    reliability : pandas.DataFrame
        The reliability table (:func:`~harmony.reliability.table.reliability_table`).
    manifest : mapping, optional
        The run manifest; its ``config.reliability`` section gives the settings (the defaults without it).

    Returns
    -------
    pandas.DataFrame
        The verdicts of the stable features, by decreasing ``estimate``.

    Raises
    ------
    SchemaError
        When ``reliability`` is not a reliability table with a ``reason`` column.
    ConfigError
        When the manifest's reliability settings do not validate.

    Examples
    --------
    >>> rel = pd.DataFrame({"feature": list("aabbcc"), "perturbation": ["noise", "all"] * 3,
    ...                     "metric": "ICC(A,1)", "estimate": [0.95, 0.93, 0.8, 0.85, 0.97, 0.96],
    ...                     "ci_low": [0.9, 0.88, 0.62, 0.7, 0.93, 0.92], "ci_high": 0.99, "n_cases": 20,
    ...                     "n_variants": 3, "category": "good", "reason": ""})
    >>> rel["stable"] = rel["ci_low"] >= 0.75  # as reliability_table judges ICC(A,1) by default
    >>> stable_features(rel)["feature"].tolist()
    ['c', 'a']
    """
    verdicts = feature_verdicts(reliability, _reliability_settings(manifest))
    if not len(verdicts):
        return verdicts
    return verdicts[verdicts[schema.STABLE]].sort_values(schema.ESTIMATE, ascending=False)


def _why_not_run(run: Mapping[str, Any], stage: str, default: str) -> str:
    record = (run["manifest"].get("stages") or {}).get(stage) or {}
    return record.get(NOT_RUN, default)


def _weakest_kind(reliability: pd.DataFrame, metric: str, settings: Mapping[str, Any]) -> str:
    """One sentence: the single perturbation kinds ordered by the median of their features' judged value."""
    rows = judged_rows(reliability, metric, settings)
    rows = rows[rows[schema.PERTURBATION] != ALL_PERTURBATIONS]
    medians = rows.groupby(schema.PERTURBATION)["judged"].median().dropna().sort_values()
    if len(medians) < 2:
        return ""
    listed = ", ".join(f"{kind} {value:.2f}" for kind, value in medians.items())
    return f"Median {judged_words(metric, settings)}: {listed}; {medians.index[0]} changes the features most."


#: Where the stability section's CSV files are, relative to the report.
_STABLE_CSV, _BY_PERTURBATION_CSV = "reliability/stable_features.csv", "reliability/stable_by_perturbation.csv"


def _study_size(reliability: pd.DataFrame, metric: str, settings: Mapping[str, Any]) -> str:
    rows = reliability[reliability[schema.METRIC] == metric]
    if not len(rows):
        return ""
    return study_size_sentence(int(rows[schema.N_CASES].max()), int(rows[schema.N_VARIANTS].min()), settings)


def _stable_lists(reliability: pd.DataFrame, settings: Mapping[str, Any], kinds: Sequence[str]) -> str:
    """Per perturbation group, how many and which features pass the rule there."""
    wide = stable_by_perturbation(reliability, settings)
    rows = []
    for kind in kinds:
        if kind not in wide.columns:
            continue
        names = wide.loc[wide[kind], schema.FEATURE].tolist()
        label = "all variants pooled (the whole design)" if kind == ALL_PERTURBATIONS else kind
        listed = ", ".join(_e(n) for n in names) if names else '<span class="muted">none</span>'
        rows.append(f"<tr><td>{_e(label)}</td><td class=\"num\">{len(names)}</td>"
                    f"<td><details><summary>show</summary>{listed}</details></td></tr>")
    return ("<table><thead><tr><th>passes under</th><th class=\"num\">features</th><th>which</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _stability_section(run: Mapping[str, Any], figures: _Figures) -> str:
    reliability = run["reliability"]
    if reliability is None or not len(reliability):
        why = _why_not_run(run, "reliability", "no reliability table in this run")
        return f'<section id="stability"><h2>Stability</h2><p class="muted">Not run: {_e(why)}.</p></section>'
    manifest = run["manifest"]
    settings = _reliability_settings(manifest)
    metric = primary_metric(reliability, manifest)
    judged = judged_words(metric, settings)
    shown = f"Each point is the {judged} of a feature's {metric}"
    kinds = _kinds_of(reliability[reliability[schema.METRIC] == metric])
    n_features = reliability[schema.FEATURE].nunique()
    dist = figures("icc_distribution", plot_icc_distribution(reliability, metric, settings=settings),
                   f"{shown}, under each perturbation kind; the coloured bands are the categories read from that "
                   f"same value, so a point in a band is a feature counted in that category below. "
                   f"{_weakest_kind(reliability, metric, settings)}", f"{metric} distribution per perturbation kind")
    _, truncated = heatmap_features(reliability, metric, settings=settings)
    heat_caption = (f"The {judged} of {metric} per feature (rows) and perturbation kind (columns), the value "
                    "the categories and the stable flags are read from. "
                    + (f"Only the {HEATMAP_TOP_N} of {n_features} features whose value differs most between kinds "
                       "are shown; the full table is reliability.parquet." if truncated else
                       f"All {n_features} features."))
    heat = figures("icc_heatmap", plot_icc_heatmap(reliability, metric, settings=settings), heat_caption,
                   "heatmap of features by perturbation kind")
    counts = summary_counts(reliability, settings).reindex(kinds)
    counts = counts.loc[:, (counts != 0).any(axis=0) | (counts.columns == schema.STABLE)].reset_index()
    stable = stable_features(reliability, manifest)
    columns = [schema.FEATURE, WORST_PERTURBATION, schema.METRIC, schema.ESTIMATE, schema.CI_LOW, schema.CI_HIGH,
               schema.CATEGORY, schema.N_CASES]
    stable_table = stable[columns].rename(columns={WORST_PERTURBATION: "weakest under"})
    return (
        '<section id="stability"><h2>Stability: which features survive perturbation</h2>'
        + f'<p class="rule">{_e(rule_sentence(settings))}</p>'
        + _read(f"Each feature was extracted from every case under every perturbation variant. {_e(metric)} "
                "measures how well the cases keep their ranking and values across variants: near 1, a feature "
                "describes the lesion, not the perturbation; below 0.5, the perturbation dominates. Compare the "
                "kinds to see which perturbation breaks which feature, and build models only on the stable list. "
                + _study_size(reliability, metric, settings))
        + dist + f"<h3>Features per {_e(metric)} category and perturbation kind</h3>"
        + f'<p class="muted">Counted on the {_e(judged)} of {_e(metric)}, as the figures above and below show it; '
          "<code>stable</code> counts the features that pass the rule under that kind.</p>"
        + _table(counts, numeric=[c for c in counts.columns if c != schema.PERTURBATION], scroll=False)
        + heat
        + "<h3>Stable under each perturbation kind</h3>"
        + f'<p class="muted">Features passing the rule under one kind may still fail under another. Per feature and '
          f'kind: <a href="{_BY_PERTURBATION_CSV}">{_BY_PERTURBATION_CSV}</a>.</p>'
        + _stable_lists(reliability, settings, kinds)
        + f"<h3>Stable features ({len(stable)} of {n_features})</h3>"
        + '<p class="muted">Stable under every perturbation kind and under all of them together; each row shows its '
          f"weakest check, with the {settings['confidence']:.0%} confidence interval (ci_low, ci_high). Every "
          f'feature\'s verdict and reason: <a href="{_STABLE_CSV}">{_STABLE_CSV}</a>.</p>'
        + (_table(stable_table, numeric=[schema.ESTIMATE, schema.CI_LOW, schema.CI_HIGH, schema.N_CASES])
           if len(stable) else '<p class="bad">No feature is stable under this design.</p>')
        + "</section>"
    )


def _notices(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The warnings recorded by the run's stages (in stage order), or by a single command."""
    found = list(manifest.get("warnings") or [])
    for record in (manifest.get("stages") or {}).values():
        found += (record or {}).get("warnings") or []
    return found


def notices_html(manifest: Mapping[str, Any]) -> tuple[str, str]:
    """(banner, section): a loud banner for a lowered guard, and the list of the run's warnings, or ("", "").

    Parameters
    ----------
    manifest : mapping
        A manifest whose ``warnings`` or ``stages.*.warnings`` hold :meth:`~harmony.core.notices.WarningLog.records`.

    Returns
    -------
    (str, str)
        HTML.

    Examples
    --------
    >>> banner, section = notices_html({"warnings": [{"why": "GUARD LOWERED: 2 cases", "feature": None,
    ...                                              "site": None, "case": None, "kind": "harmony", "count": 1}]})
    >>> 'class="loud"' in banner, "2 cases" in section
    (True, True)
    """
    notices = [Notice(**{k: r.get(k) for k in ("why", "feature", "site", "case")}, kind=r.get("kind", "harmony"),
                      count=int(r.get("count", 1))) for r in _notices(manifest)]
    if not notices:
        return "", ""
    loud = [n for n in notices if n.why.startswith("GUARD LOWERED")]
    banner = "".join(f'<div class="loud">{_e(n.text)}</div>' for n in loud)
    items = "".join(f"<li>{_e(n.text)}</li>" for n in notices)
    section = ('<section id="warnings"><h2>Warnings</h2>'
               + _read("Each warning raised while this run computed its tables, once, with how often it came up. "
                       "They do not stop the run; they say where a number above deserves less trust.")
               + f'<ul class="notices">{items}</ul></section>')
    return banner, section


#: Plain names of the site tests of harmonize's tables.
_TEST_NAMES = {"welch_anova": "Welch ANOVA", "anova": "one-way ANOVA", "kruskal_wallis": "Kruskal-Wallis",
               "anderson_darling": "Anderson-Darling (k-sample)"}
_AD_CAPS = ("Anderson-Darling p values are capped by scipy to the range of its tables, 0.001 to 0.25: its points "
            "pile up on the lines those caps make (after adjustment), and read as 'p < 0.001' or 'p > 0.25', not "
            "as exact values. ")


def _has_ad(site_effects: pd.DataFrame) -> bool:
    return "anderson_darling" in set(site_effects[hm.TEST])


def readable_metric(name: str) -> str:
    """A summary metric of harmonize's table in words; an unknown name is returned as it is.

    ``mean_abs_correlation[truth_radius_mm]`` becomes ``mean |r| with the truth: radius (mm)``.

    Parameters
    ----------
    name : str
        The ``metric`` of :data:`harmony.harmonize.metrics.SUMMARY`.

    Returns
    -------
    str

    Examples
    --------
    >>> readable_metric("mean_abs_correlation[truth_radius_mm]")
    'mean |r| with the truth: radius (mm)'
    >>> readable_metric("welch_anova_fraction_significant")
    'share of features differing between sites (Welch ANOVA, adjusted p < 0.05)'
    """
    if name.startswith("mean_abs_correlation[") and name.endswith("]"):
        truth = name[len("mean_abs_correlation["):-1].removeprefix(schema.TRUTH_PREFIX)
        for unit in ("mm", "hu", "mm3"):
            if truth.endswith(f"_{unit}"):
                truth = f"{truth[:-len(unit) - 1]} ({unit.upper() if unit == 'hu' else unit})"
        return f"mean |r| with the truth: {truth.replace('_', ' ')}"
    for test, label in _TEST_NAMES.items():
        if name == f"{test}_fraction_significant":
            return f"share of features differing between sites ({label}, adjusted p < 0.05)"
    return {"site_classifier_accuracy": "site classifier accuracy (cross-validated)",
            "site_classifier_chance": "site classifier accuracy by chance (largest site's share)"}.get(name, name)


def _significant_counts(site_effects: pd.DataFrame) -> str:
    """One sentence per the first site test: how many features differ significantly between sites, before and after."""
    test = next((t for t in hm.SITE_TESTS if t in set(site_effects[hm.TEST])), None)
    if test is None:
        return ""
    rows = site_effects[site_effects[hm.TEST] == test]
    n = rows.groupby(schema.STAGE)[hm.SIGNIFICANT].agg(["sum", "size"])
    if not {"raw", "combat"} <= set(n.index):
        return ""
    return (f"{_TEST_NAMES.get(test, test)}: {int(n.loc['raw', 'sum'])} of {int(n.loc['raw', 'size'])} features "
            "differ significantly "
            f"between sites before, {int(n.loc['combat', 'sum'])} after.")


def _classifier_sentence(summary: pd.DataFrame | None) -> str:
    """The site classifier's accuracy before and after, against chance, from harmonize's summary table."""
    if summary is None:
        return ""
    value = summary.set_index([schema.METRIC, schema.STAGE])[schema.ESTIMATE]
    keys = [("site_classifier_accuracy", "raw"), ("site_classifier_accuracy", "combat"),
            ("site_classifier_chance", "raw")]
    if not all(k in value.index for k in keys):
        return ""
    before, after, chance = (float(value[k]) for k in keys)
    return (f" A cross-validated classifier names a case's site with accuracy {before:.2f} before and {after:.2f} "
            f"after (chance {chance:.2f}): the closer to chance, the less site is left.")


def _truth_sentence(truth: pd.DataFrame) -> str:
    """How many (feature, truth) pairs kept or gained correlation with the truth."""
    wide = truth.pivot_table(index=[schema.FEATURE, hm.TRUTH], columns=schema.STAGE, values=schema.ESTIMATE,
                             aggfunc="first").abs().dropna()
    if not {"raw", "combat"} <= set(wide.columns) or not len(wide):
        return ""
    kept = int((wide["combat"] >= wide["raw"] - 0.01).sum())
    verdict = ("most of the biology survives harmonization" if kept >= 0.8 * len(wide) else
               "harmonization removed signal as well as site: check that the covariates that carry biology are "
               "listed in harmonization.covariates")
    return f"{kept} of {len(wide)} pairs keep or gain correlation (within 0.01): {verdict}."


def _harmonization_section(run: Mapping[str, Any], figures: _Figures) -> str:
    harmonized = run["harmonized"]
    if harmonized is None or not len(harmonized):
        why = _why_not_run(run, "harmonization", "no harmonized table in this run")
        return (f'<section id="harmonization"><h2>Harmonization</h2><p class="muted">Not run: {_e(why)}.</p>'
                "</section>")
    parts = ['<section id="harmonization"><h2>Harmonization: removing the scanner, keeping the biology</h2>',
             _read("ComBat removes each site's shift and scale from every feature. It worked if the site effect "
                   "drops (points fall below the diagonal and under the dashed significance line), if the sites "
                   "overlap in the PCA after harmonization, and if each feature's correlation with the simulated "
                   "truth stays on or above the diagonal (biology kept).")]
    summary = run["harmonization_summary"]
    if summary is not None and len(summary):
        wide = summary.pivot_table(index=schema.METRIC, columns=schema.STAGE, values=schema.ESTIMATE,
                                   aggfunc="first", sort=False)
        wide = wide[[s for s in schema.STAGES if s in wide.columns]].rename(
            columns={"raw": "before", "combat": "after ComBat"}).reset_index()
        wide[schema.METRIC] = wide[schema.METRIC].map(readable_metric)
        parts += ["<h3>Summary</h3>", _table(wide, numeric=["before", "after ComBat"], scroll=False)]
    site_effects = run["site_effects"]
    if site_effects is not None and len(site_effects):
        parts += ["<h3>Site effect per feature</h3>",
                  figures("site_effect", plot_site_effect(site_effects),
                          "Each point is a feature and test: the p value (Benjamini-Hochberg adjusted) of its "
                          "association with site before (x) and after (y) ComBat, on a -log10 scale; each axis is "
                          "scaled to its own points, so the grey diagonal (no change) is not at 45 degrees when "
                          "harmonization removed most of the effect. Dashed lines: p = 0.05. "
                          f"{_AD_CAPS if _has_ad(site_effects) else ''}{_significant_counts(site_effects)}",
                          "site effect before and after")]
    pca = []
    for stage in schema.STAGES:
        try:
            fig = plot_pca(harmonized, stage)
        except ValueError as exc:
            pca.append(f'<p class="muted">{_e(exc)}</p>')
            continue
        pca.append(figures(f"pca_{stage}", fig, f"Cases on the first two principal components, coloured by site "
                                                f"({'before' if stage == 'raw' else 'after'} harmonization).",
                           f"PCA scatter {stage}"))
    parts += ["<h3>Cases by site, before and after</h3>", f'<div class="pair">{"".join(pca)}</div>',
              '<p class="muted">Sites that form separate clouds before and mix after: ComBat removed the scanner '
              f"signature.{_e(_classifier_sentence(summary))}</p>"]
    truth = run["truth_correlation"]
    if truth is not None and len(truth):
        parts += ["<h3>Correlation with the ground truth</h3>",
                  figures("truth_correlation", plot_truth_correlation(truth),
                          "Each point is a (feature, truth variable) pair: |Pearson r| before (x) and after (y). "
                          + _truth_sentence(truth),
                          "truth correlation before and after")]
    parts.append("</section>")
    return "".join(parts)


def _failures_section(run: Mapping[str, Any]) -> str:
    failures = run["failures"]
    if failures is None or not len(failures):
        body = '<p class="ok">No task failed.</p>'
    else:
        body = (f'<p class="bad">{len(failures)} task(s) failed; their features are absent from every table '
                "above.</p>" + _table(failures))
    return ('<section id="failures"><h2>Failures</h2>'
            + _read("A failed task is one (case, variant, repeat) extraction that raised, for instance a mask eroded "
                    "to nothing. The error says why; the rest of the run is unaffected. Many failures of one "
                    "variant usually mean that perturbation is too strong for these lesions.")
            + body + "</section>")


def _page(name: str, subtitle: str, sections: Sequence[str], links: Sequence[tuple[str, str]],
          versions: Mapping[str, Any]) -> str:
    nav = "".join(f'<a href="#{key}">{label}</a>' for key, label in links)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>harmony report: {_e(name)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>harmony report: {_e(name)}</h1><p>{_e(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{''.join(sections)}</main>"
        f"<footer>harmony {_e(versions.get('harmony-radiomics', ''))} · self-contained page: figures are embedded "
        "and also saved as PNG in figures/</footer></body></html>\n"
    )


def render_report(run: Mapping[str, Any], figures_dir: str | os.PathLike) -> str:
    """The report's HTML text for the tables of a run; its figures are also written to ``figures_dir``.

    Parameters
    ----------
    run : mapping
        What :func:`~harmony.workflows.layout.load_run` returns: ``manifest`` (a dict) and the tables
        ``cases``, ``variants``, ``features``, ``failures``, ``reliability``, ``harmonized``,
        ``site_effects``, ``truth_correlation`` and ``harmonization_summary``, each a DataFrame or None
        (a section whose tables are None says so instead).
    figures_dir : str or path-like
        Folder for the figures as ``<name>.png`` (created when a figure is drawn).

    Returns
    -------
    str
        A self-contained HTML page: the figures are embedded as data URIs, nothing is fetched.

    Examples
    --------
    >>> import tempfile
    >>> tables = ("cases", "variants", "features", "failures", "reliability", "harmonized", "site_effects",
    ...           "truth_correlation", "harmonization_summary")
    >>> run = {"manifest": {"config": {"experiment": {"name": "demo"}}}, **dict.fromkeys(tables)}
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     page = render_report(run, f"{folder}/figures")
    >>> page.startswith("<!DOCTYPE html>"), "<title>harmony report: demo</title>" in page
    (True, True)
    """
    figures = _Figures(Path(figures_dir))
    manifest = run["manifest"]
    config = manifest.get("config") or {}
    name = (config.get("experiment") or {}).get("name", "harmony run") if isinstance(config, Mapping) else "harmony run"
    banner, notices = notices_html(manifest)
    sections = [banner, _summary_section(run), notices, _stability_section(run, figures),
                _harmonization_section(run, figures), _failures_section(run)]
    links = [("summary", "Summary")] + ([("warnings", "Warnings")] if notices else []) + [
        ("stability", "Stability"), ("harmonization", "Harmonization"), ("failures", "Failures")]
    return _page(name, f"Feature reproducibility and scanner harmonization, finished {manifest.get('finished', '–')}",
                 sections, links, manifest.get("versions") or {})


def render_harmonization_report(tables: Mapping[str, Any], figures_dir: str | os.PathLike,
                                manifest: Mapping[str, Any] | None = None) -> str:
    """The harmonization section as a page of its own (``harmony harmonize``): figures, tables, warnings.

    Parameters
    ----------
    tables : mapping
        ``harmonized``, ``site_effects``, ``truth_correlation`` and ``summary`` (or
        ``harmonization_summary``), as :func:`~harmony.workflows.harmonization.run_harmonization` returns
        them; any may be missing.
    figures_dir : str or path-like
        Folder for the figures as ``<name>.png``.
    manifest : mapping, optional
        The command's manifest (its ``warnings`` are listed, its ``versions`` in the footer).

    Returns
    -------
    str
        A self-contained HTML page.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     page = render_harmonization_report({}, f"{folder}/figures")
    >>> "Not run: no harmonized table" in page
    True
    """
    manifest = dict(manifest or {})
    run = {"manifest": manifest, "harmonized": tables.get("harmonized"), "site_effects": tables.get("site_effects"),
           "truth_correlation": tables.get("truth_correlation"),
           "harmonization_summary": tables.get("harmonization_summary", tables.get("summary"))}
    banner, notices = notices_html(manifest)
    links = [("harmonization", "Harmonization")] + ([("warnings", "Warnings")] if notices else [])
    return _page("harmonize", f"ComBat harmonization across sites, finished {manifest.get('finished', '–')}",
                 [banner, _harmonization_section(run, _Figures(Path(figures_dir))), notices], links,
                 manifest.get("versions") or {})
