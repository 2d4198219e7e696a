"""One cell of the benchmark (a cohort, a method, a replicate) and what is read off all of them.

A cell draws its cohort from ``SeedSequence(seed, spawn_key=(key of the cohort's name, replicate))``, so a
cell's result depends only on what it is, never on which worker runs it or in which order; every method of a
(cohort, replicate) sees the same subjects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harmony.core.files import stable_hash
from harmony.harmonize.benchmark.adapters import NotApplicable, harmonize_split
from harmony.harmonize.benchmark.cohorts import (
    GROUP,
    CohortModel,
    ImageScenario,
    Scenario,
    scenario_model,
    simulate_cohort,
)
from harmony.harmonize.benchmark.images import ImageCohort
from harmony.harmonize.benchmark.scores import score_split

__all__ = [
    "ACCURACY_MARGIN",
    "BIAS_TOLERANCE",
    "RANK_METRICS",
    "SPLITS",
    "Cell",
    "rank_methods",
    "recommend",
    "run_cell",
    "sample_size_curve",
]

#: The definition of the scores a cell's file holds: raised when one changes, so that a resumed run computes
#: again the cells an earlier definition scored (2: the site-accuracy excess is over the larger of chance and the
#: scanner-free subjects' own accuracy).
SCORES_VERSION = 2
#: The splits every cell scores: the subjects a method was fitted on, and held-back ones.
SPLITS = ("train", "test")
#: The held-back scores the ranking uses, and how each is read (``lower``, ``higher`` or ``one``: closest to 1).
RANK_METRICS = {"site_accuracy_excess": "lower", "ad_fraction": "lower", "covariance_left": "lower",
                "truth_correlation": "higher", "effect_bias": "lower", "group_effect_kept": "one",
                "out_of_range": "lower"}
#: The site effect is "at chance" when the accuracy's interval reaches within this of 1/k, or of the accuracy on
#: the scanner-free values when the biology differs by site (it cannot be told apart from a site effect this
#: small).
ACCURACY_MARGIN = 0.05
#: The biology "survives" when the covariate effects are biased by at most this many SDs.
BIAS_TOLERANCE = 0.1


@dataclass(frozen=True)
class Cell:
    """One unit of work.

    Parameters
    ----------
    cohort : str
        Name of the cohort (a scenario's name, or e.g. ``like-my-data n=10``); with ``seed`` and
        ``replicate`` it chooses the random stream.
    source : Scenario, CohortModel or ImageCohort
        A scenario (its model is drawn per replicate), a fitted model, or an extracted image-level cohort
        (split at random per replicate).
    method : str
        An adapter name.
    replicate : int
    seed : int
        The run's seed.
    n_train, n_test : int
        Subjects per batch cell.
    controls_only : bool, default False
        Fit on the training controls only.
    smooth : tuple of str, default ("age",)
        Continuous covariates a method may model nonlinearly.
    neuroharmonize_python : str, default ""
        A Python that has neuroHarmonize, for its adapters (not part of the cell's key).
    """

    cohort: str
    source: Scenario | CohortModel | ImageCohort
    method: str
    replicate: int
    seed: int
    n_train: int
    n_test: int
    controls_only: bool = False
    smooth: tuple[str, ...] = ("age",)
    neuroharmonize_python: str = ""

    @property
    def key(self) -> str:
        """A stable name of the cell (its result file is named by it; a new :data:`SCORES_VERSION` renames it)."""
        return stable_hash([self.cohort, self.method, self.replicate, self.seed, self.n_train, self.n_test,
                            SCORES_VERSION])

    @classmethod
    def of(cls, scenario: Scenario | ImageScenario, method: str, replicate: int, seed: int,
           source: ImageCohort | None = None, neuroharmonize_python: str = "") -> Cell:
        """The cell of a scenario of the matrix.

        Parameters
        ----------
        scenario : Scenario or ImageScenario
        method : str
        replicate, seed : int
        source : ImageCohort, optional
            The extracted cohort of an image-level scenario (for this seed).
        neuroharmonize_python : str, default ""
            A Python that has neuroHarmonize.

        Returns
        -------
        Cell
        """
        return cls(scenario.name, scenario if source is None else source, method, replicate, seed, scenario.n_train,
                   scenario.n_test, scenario.controls_only, neuroharmonize_python=neuroharmonize_python)


def _rng(cell: Cell) -> np.random.Generator:
    key = int(stable_hash(cell.cohort, 8), 16)
    return np.random.default_rng(np.random.SeedSequence(cell.seed, spawn_key=(key, cell.replicate, cell.n_train)))


def run_cell(cell: Cell) -> dict:
    """Simulate the cell's cohort, harmonize it with its method, score both splits.

    Parameters
    ----------
    cell : Cell

    Returns
    -------
    dict
        ``key``, ``cohort``, ``method``, ``replicate``, ``n_train``, ``status`` (``ok`` or ``not applicable``),
        ``reason``, ``seconds`` (fit and apply) and ``scores``: one dict per split and metric (JSON-ready: a
        value that is not finite is None).

    Examples
    --------
    >>> result = run_cell(Cell.of(Scenario("demo", n_features=4, n_train=8, n_test=8), "combat", 0, 0))
    >>> result["status"], sorted({s["split"] for s in result["scores"]})
    ('ok', ['test', 'train'])
    """
    rng = _rng(cell)
    if isinstance(cell.source, ImageCohort):
        train, test = cell.source.split(cell.n_train, cell.n_test, rng)
        lower, upper = cell.source.bounds()
    else:
        model = scenario_model(cell.source, rng) if isinstance(cell.source, Scenario) else cell.source
        train, test = simulate_cohort(model, cell.n_train, rng), simulate_cohort(model, cell.n_test, rng)
        lower, upper = model.bounds()
    if cell.controls_only:
        train = train.subset(train.covariates[GROUP].to_numpy() == "control")
    result = {"key": cell.key, "cohort": cell.cohort, "method": cell.method, "replicate": cell.replicate,
              "n_train": cell.n_train, "status": "ok", "reason": "", "seconds": None, "scores": []}
    start = time.perf_counter()
    try:
        harmonized = harmonize_split(cell.method, train, test, list(cell.smooth),
                                     neuroharmonize_python=cell.neuroharmonize_python or None)
    except NotApplicable as exc:
        return result | {"status": "not applicable", "reason": str(exc)}
    result["seconds"] = time.perf_counter() - start
    for split, cohort, X in zip(SPLITS, (train, test), harmonized):
        group = (cohort.covariates[GROUP].to_numpy() == "patient") if GROUP in cohort.covariates else None
        scores = score_split(X, cohort.clean, cohort.truth_batch, cohort.design, group, lower, upper,
                             seed=cell.replicate)
        result["scores"] += [{"split": split, "metric": metric, "value": value if np.isfinite(value) else None}
                             for metric, value in scores.items()]
    return result


def rank_methods(scores: pd.DataFrame, *, split: str = "test") -> pd.DataFrame:
    """The ranked table: methods ordered by their mean normalised rank over cohorts and :data:`RANK_METRICS`.

    Within each cohort and metric (means over replicates), methods are ranked and the ranks scaled to [0, 1]
    (0 best); a method's score is the mean over the metrics, then over the cohorts where it applied. Methods
    that applied to fewer cohorts than the most (e.g. a log transform, only to positive features) are
    ranked after the others, among themselves.

    Parameters
    ----------
    scores : DataFrame
        Tidy scores: ``cohort, method, replicate, split, metric, value``.
    split : str, default "test"
        Which split ranks (held-back subjects by default).

    Returns
    -------
    DataFrame
        One row per method: ``rank``, ``method``, ``score``, the mean of each metric over cohorts,
        ``seconds`` and ``cohorts`` (where it applied), best first.

    Raises
    ------
    ValueError
        When ``scores`` has no row of ``split``.
    """
    data = scores[scores["split"] == split]
    if data.empty:
        raise ValueError(f"no scores of split {split!r} to rank")
    means = data.groupby(["cohort", "method", "metric"])["value"].mean().unstack("metric")
    parts = []
    for metric, how in RANK_METRICS.items():
        values = means[metric]
        values = -values if how == "higher" else (values - 1).abs() if how == "one" else values
        values = values.abs() if metric == "site_accuracy_excess" else values
        ranks = values.groupby(level="cohort").rank(method="average")
        top = ranks.groupby(level="cohort").transform("max")
        parts.append(((ranks - 1) / (top - 1).where(top > 1)).rename(metric))
    per_cohort = pd.concat(parts, axis=1).mean(axis=1, skipna=True)
    table = pd.DataFrame({"score": per_cohort.groupby(level="method").mean(),
                          "cohorts": per_cohort.groupby(level="method").size()})
    table = table.join(means[list(RANK_METRICS)].groupby(level="method").mean())
    if "seconds" in scores:
        table = table.join(scores.groupby("method")["seconds"].mean())
    table["partial"] = table["cohorts"] < table["cohorts"].max()  # ranked on a subset: listed after the others
    table = table.sort_values(["partial", "score"]).drop(columns="partial").reset_index()
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def recommend(ranked: pd.DataFrame) -> str:
    """A plain-words recommendation from the ranked table.

    Parameters
    ----------
    ranked : DataFrame
        From :func:`rank_methods`.

    Returns
    -------
    str
        Which method (and transform) to use, with its held-back numbers against plain ComBat's.

    Raises
    ------
    ValueError
        When no harmonizer was ranked.
    """
    candidates = ranked[ranked["method"] != "none"]
    if candidates.empty:
        raise ValueError("no harmonization method was ranked")
    best = candidates.iloc[0]
    method, _, transform = best["method"].partition("+")
    words = (f"Use {method}" + (f" with the {transform} transform" if transform else " without a transform")
             + f": on held-back subjects it left a site-classifier accuracy {best['site_accuracy_excess']:+.3f} "
               f"from chance (or from the scanner-free subjects' own accuracy, where higher), "
               f"{best['ad_fraction']:.0%} of features with a distribution-level site difference, "
               f"and kept a correlation with the truth of {best['truth_correlation']:.3f}")
    plain = ranked[ranked["method"] == "combat"]
    if best["method"] != "combat" and not plain.empty:
        p = plain.iloc[0]
        words += (f" (plain ComBat: {p['site_accuracy_excess']:+.3f}, {p['ad_fraction']:.0%}, "
                  f"{p['truth_correlation']:.3f}; ranked {int(p['rank'])})")
    return words + "."


def sample_size_curve(scores: pd.DataFrame, *, n_boot: int = 1000, level: float = 0.95,
                      rng: np.random.Generator) -> pd.DataFrame:
    """Held-back site accuracy and biology against training subjects per site, with bootstrap intervals.

    For each ``n_train`` the replicates (seeds) are resampled with replacement; the interval is the
    percentile interval of the mean.

    Parameters
    ----------
    scores : DataFrame
        Tidy scores of one method with ``n_train``, ``replicate``, ``split``, ``metric``, ``value``.
    n_boot : int, default 1000
    level : float, default 0.95
    rng : numpy.random.Generator
        Draws the bootstrap resamples.

    Returns
    -------
    DataFrame
        Per ``n_train``: ``site_accuracy`` with ``low``/``high``, ``chance``, ``clean_accuracy`` (the site
        accuracy of the same subjects without their scanner: the biology's own site signal, which harmonizing
        must not remove), ``truth_correlation``, ``effect_bias``, ``replicates``, ``at_chance`` (low <= the
        larger of chance and clean accuracy, + :data:`ACCURACY_MARGIN`),
        ``biology_kept`` (effect bias <= :data:`BIAS_TOLERANCE`, or no covariates) and ``enough`` (both).

    Raises
    ------
    ValueError
        When there are no held-back scores.
    """
    data = scores[scores["split"] == "test"]
    if data.empty:
        raise ValueError("no held-back scores for a sample-size curve")
    wide = data.pivot_table(index=["n_train", "replicate"], columns="metric", values="value")
    rows = []
    for n, group in wide.groupby(level="n_train"):
        accuracy = group["site_accuracy"].to_numpy()
        boots = accuracy[rng.integers(len(accuracy), size=(n_boot, len(accuracy)))].mean(axis=1)
        low, high = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
        bias = group["effect_bias"].mean()
        clean = group["clean_site_accuracy"].mean() if "clean_site_accuracy" in group else np.nan
        rows.append({"n_train": int(n), "site_accuracy": accuracy.mean(), "low": low, "high": high,
                     "chance": group["chance"].mean(), "clean_accuracy": clean,
                     "truth_correlation": group["truth_correlation"].mean(),
                     "effect_bias": bias, "replicates": len(accuracy)})
    curve = pd.DataFrame(rows)
    curve["at_chance"] = curve["low"] <= np.fmax(curve["chance"], curve["clean_accuracy"]) + ACCURACY_MARGIN
    curve["biology_kept"] = curve["effect_bias"].isna() | (curve["effect_bias"] <= BIAS_TOLERANCE)
    curve["enough"] = curve["at_chance"] & curve["biology_kept"]
    return curve
