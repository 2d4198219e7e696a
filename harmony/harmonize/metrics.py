"""How much site effect is left, and how much biology survives: tidy tables before and after harmonization.

pingouin-style: each function takes a long table (one value a row) and the names of its columns, and
returns a tidy DataFrame. :func:`harmonization_metrics` runs all of them on a harmonized table
(:data:`harmony.core.schema.HARMONIZED`), once per ``stage`` (``raw``, ``combat``).

Per feature, the site effect is tested for the means (Welch's ANOVA, one-way ANOVA) and for the whole
distribution (Kruskal-Wallis, Anderson-Darling k-sample); each test is summarised as the fraction of
features associated with site after Benjamini-Hochberg correction. A site classifier (standardised
features, logistic regression, stratified k-fold with a fixed ``random_state``) gives a multivariate view,
scored by balanced accuracy (the mean over the sites of the share of each site's subjects predicted right),
whose chance level is 1/k for k sites whatever their sizes (plain accuracy on unbalanced sites has a
chance level of at least the largest site's share, and reads well above "chance" with no site effect).
:func:`harmonization_metrics` warns (:class:`~harmony.harmonize.inputs.HarmonizationWarning`) when the
harmonized stage's classifier is not closer to chance than the raw one, and when a distribution-level site
effect (Kruskal-Wallis, Anderson-Darling fractions) rises after harmonization. On simulated cohorts, each feature's Pearson
correlation with each ``truth_*`` column, and the covariates' effects on each feature (ordinary least
squares, feature ~ 1 + covariates), show whether the biology is preserved.

Anderson-Darling p-values are scipy's interpolation, floored at 0.001 and capped at 0.25.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from harmony.core import schema
from harmony.core.errors import HarmonyError
from harmony.core.schema import Column, TableSpec
from harmony.harmonize.covariates import covariate_matrix, fit_covariates
from harmony.harmonize.inputs import HarmonizationWarning

__all__ = [
    "COVARIATE_EFFECTS",
    "PVALUE",
    "PVALUE_BH",
    "SIGNIFICANT",
    "SITE_EFFECTS",
    "SITE_TESTS",
    "STATISTIC",
    "STD_ERROR",
    "SUMMARY",
    "TERM",
    "TEST",
    "TRUTH",
    "TRUTH_CORRELATION",
    "MetricsError",
    "covariate_effects",
    "harmonization_metrics",
    "site_classifier_accuracy",
    "site_effects",
    "truth_correlations",
    "welch_anova",
]

# -- column names of the metrics tables (the one place they are spelled) ---------------------------
TEST = "test"
STATISTIC = "statistic"
PVALUE = "pvalue"
PVALUE_BH = "pvalue_bh"
SIGNIFICANT = "significant"
TRUTH = "truth"
TERM = "term"
STD_ERROR = "se"
#: Column the batch labels are joined into, whatever the batch column is called.
_BATCH = "__batch__"
#: The site tests of :func:`site_effects`, in their row order.
SITE_TESTS = ("welch_anova", "anova", "kruskal_wallis", "anderson_darling")
SITE_EFFECTS = TableSpec(
    "site_effects",
    tuple(Column(*c) for c in ((schema.FEATURE, "str"), (schema.STAGE, "str"), (TEST, "str", False, SITE_TESTS),
                               (STATISTIC, "float64", True), (PVALUE, "float64", True),
                               (PVALUE_BH, "float64", True), (SIGNIFICANT, "bool"))),
    key=(schema.FEATURE, schema.STAGE, TEST),
    doc="Per feature, stage and test: the site effect's statistic, p-value, BH-adjusted p-value and verdict.",
)


SUMMARY = TableSpec(
    "harmonization_summary",
    tuple(Column(*c) for c in ((schema.STAGE, "str"), (schema.METRIC, "str"), (schema.ESTIMATE, "float64", True))),
    key=(schema.STAGE, schema.METRIC),
    doc="Per stage: fraction of features with a site effect per test, the site classifier's balanced accuracy "
        "(site_classifier_accuracy) and its chance level 1/k (site_classifier_chance), ...",
)


TRUTH_CORRELATION = TableSpec(
    "truth_correlation",
    tuple(Column(*c) for c in ((schema.FEATURE, "str"), (TRUTH, "str"), (schema.STAGE, "str"),
                               (schema.ESTIMATE, "float64", True))),
    key=(schema.FEATURE, TRUTH, schema.STAGE),
    doc="Pearson correlation of each feature with each truth_* column, per stage.",
)


COVARIATE_EFFECTS = TableSpec(
    "covariate_effects",
    tuple(Column(*c) for c in ((schema.FEATURE, "str"), (TERM, "str"), (schema.STAGE, "str"),
                               (schema.ESTIMATE, "float64", True), (STD_ERROR, "float64", True),
                               (PVALUE, "float64", True))),
    key=(schema.FEATURE, TERM, schema.STAGE),
    doc="OLS effect of each covariate term on each feature (feature ~ 1 + covariates), per stage.",
)


class MetricsError(HarmonyError):
    """A table the harmonization metrics cannot use; the message names the column."""


def _require(data: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise MetricsError(f"{what}: missing column(s) {missing}; the table has {list(map(str, data.columns))}")


def _wide(data: pd.DataFrame, subject: str, feature: str, value: str) -> pd.DataFrame:
    _require(data, [subject, feature, value], "features table")
    dup = data.duplicated([subject, feature])
    if dup.any():
        row = data.loc[dup, [subject, feature]].iloc[0].to_dict()
        raise MetricsError(f"features table: more than one value per ({subject}, {feature}), e.g. {row}; "
                           "select one variant and repeat first")
    wide = data.pivot(index=subject, columns=feature, values=value)
    wide.columns.name = None
    return wide.astype(float)


def _per_subject(data: pd.DataFrame, subject: str, column: str) -> pd.Series:
    _require(data, [subject, column], "features table")
    values = data[[subject, column]].drop_duplicates()
    dup = values[subject].duplicated()
    if dup.any():
        raise MetricsError(f"column {column!r} is not constant within {subject} {values.loc[dup, subject].iloc[0]!r}")
    return values.set_index(subject)[column]


def welch_anova(groups: Sequence[np.ndarray]) -> tuple[float, float]:
    """Welch's heteroscedastic one-way ANOVA: (F, p).

    Parameters
    ----------
    groups : sequence of ndarray
        The values of each group (at least two, each with at least two values).

    Returns
    -------
    F : float
        Welch's F statistic; NaN when undefined (e.g. a group without variance).
    p : float
        Its p-value from the F distribution with ``k - 1`` and Welch's denominator degrees of freedom;
        NaN when F is.

    Examples
    --------
    >>> welch_anova([np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 6, 8, 9])])  # doctest: +ELLIPSIS
    (5.29..., 0.0625...)
    """
    k = len(groups)
    n = np.array([len(g) for g in groups], dtype=float)
    means = np.array([np.mean(g) for g in groups])
    with np.errstate(divide="ignore", invalid="ignore"):
        w = n / np.array([np.var(g, ddof=1) for g in groups])
        mean_w = np.sum(w * means) / np.sum(w)
        between = np.sum(w * (means - mean_w) ** 2) / (k - 1)
        lam = np.sum((1 - w / np.sum(w)) ** 2 / (n - 1))
        f = between / (1 + 2 * (k - 2) * lam / (k**2 - 1))
        df2 = (k**2 - 1) / (3 * lam)
    if not (np.isfinite(f) and np.isfinite(df2)):
        return float("nan"), float("nan")
    return float(f), float(stats.f.sf(f, k - 1, df2))


def _site_tests(groups: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    out = {"welch_anova": welch_anova(groups)}
    tests = {"anova": lambda: stats.f_oneway(*groups),
             "kruskal_wallis": lambda: stats.kruskal(*groups),
             "anderson_darling": lambda: stats.anderson_ksamp(groups)}
    for name, run in tests.items():
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                res = run()
            out[name] = (float(res.statistic), float(res.pvalue))
        except ValueError:  # all values identical, or a site without values
            out[name] = (float("nan"), float("nan"))
    return out


def site_effects(data: pd.DataFrame, *, site: str = schema.SITE, subject: str = schema.CASE_ID,
                 feature: str = schema.FEATURE, value: str = schema.VALUE, alpha: float = 0.05) -> pd.DataFrame:
    """Per feature, the four site tests with Benjamini-Hochberg adjusted p-values (within each test).

    Missing values are dropped feature by feature; a feature that is constant, or has fewer than two
    sites with values, gets NaN and is not significant.

    Parameters
    ----------
    data : DataFrame
        A long table, one value a row, one subject per ``subject`` and ``feature`` pair.
    site : str, default "site"
        The column holding each subject's site (batch); constant within a subject.
    subject, feature, value : str, default "case_id", "feature", "value"
        The columns holding the subject, the feature name and its value.
    alpha : float, default 0.05
        The level a BH-adjusted p-value must fall below to be significant.

    Returns
    -------
    DataFrame
        One row per feature and test of :data:`SITE_TESTS`: the ``feature`` column, ``test``,
        ``statistic``, ``pvalue``, ``pvalue_bh`` and ``significant``.

    Raises
    ------
    MetricsError
        When a column is missing, a subject has more than one value of a feature, or the site is not
        constant within a subject.

    Examples
    --------
    >>> import numpy as np
    >>> from harmony.harmonize import simulate_site_features
    >>> cases, features = simulate_site_features(n_cases=40, n_features=5, rng=np.random.default_rng(0))
    >>> effects = site_effects(features)
    >>> effects.columns.tolist()
    ['feature', 'test', 'statistic', 'pvalue', 'pvalue_bh', 'significant']
    >>> effects.groupby("test")["significant"].sum().to_dict()
    {'anderson_darling': 4, 'anova': 4, 'kruskal_wallis': 4, 'welch_anova': 4}
    """
    wide = _wide(data, subject, feature, value)
    sites = _per_subject(data, subject, site).reindex(wide.index).to_numpy()
    rows = []
    for name in wide.columns:
        col = wide[name].to_numpy()
        ok = np.isfinite(col)
        groups = [col[ok & (sites == s)] for s in pd.unique(sites[ok])]
        groups = [g for g in groups if g.size]
        results = _site_tests(groups) if len(groups) >= 2 else dict.fromkeys(SITE_TESTS, (np.nan, np.nan))
        rows += [(name, test, *results[test]) for test in SITE_TESTS]
    out = pd.DataFrame(rows, columns=[feature, TEST, STATISTIC, PVALUE])
    out[PVALUE_BH] = np.nan
    for test, idx in out.groupby(TEST).groups.items():
        p = out.loc[idx, PVALUE]
        finite = p.notna()
        if finite.any():
            out.loc[p[finite].index, PVALUE_BH] = stats.false_discovery_control(p[finite].to_numpy(), method="bh")
    out[SIGNIFICANT] = (out[PVALUE_BH] < alpha).fillna(False).astype(bool)
    return out


def site_classifier_accuracy(data: pd.DataFrame, *, site: str = schema.SITE, subject: str = schema.CASE_ID,
                             feature: str = schema.FEATURE, value: str = schema.VALUE, n_splits: int = 5,
                             random_state: int = 0, harmonizer=None, covariates: pd.DataFrame | None = None,
                             harmonizer_batch: pd.DataFrame | None = None,
                             groups: pd.Series | None = None) -> dict[str, float]:
    """Cross-validated balanced accuracy of predicting the site from the features, and its chance level 1/k.

    Logistic regression on standardised features (features with missing values are left out), scored by
    :func:`sklearn.model_selection.cross_val_score` as balanced accuracy (the mean per-site
    recall, so that chance is 1/k for k sites however unbalanced; computed by the classifier's ``score`` so
    that the harmonizer below still receives the batch) over a stratified k-fold (k = ``n_splits``,
    or the smallest site's size when that is smaller) shuffled by ``random_state``.

    With ``harmonizer`` (an unfitted :class:`~harmony.harmonize.ComBat`, and the ``covariates`` it needs,
    indexed by subject), the values are taken as raw and the harmonizer is the first step of the
    pipeline: fitted on each training fold and applied to both folds, its batch (the site) and covariates
    routed to it per fold by scikit-learn's metadata routing (enabled here only). That is the honest
    accuracy after harmonization: cross-validating on values harmonized with all subjects is biased
    *below* chance, because each held-out subject pulled its own site's fitted mean towards itself.

    Parameters
    ----------
    data : DataFrame
        A long table, one value a row, one subject per ``subject`` and ``feature`` pair.
    site : str, default "site"
        The column holding each subject's site; constant within a subject.
    subject, feature, value : str, default "case_id", "feature", "value"
        The columns holding the subject, the feature name and its value.
    n_splits : int, default 5
        Number of folds (fewer when the smallest site has fewer subjects).
    random_state : int, default 0
        Seed of the fold shuffle.
    harmonizer : ComBat, optional
        An unfitted harmonizer, refitted on each training fold.
    covariates : DataFrame, optional
        The harmonizer's covariates, indexed by subject.
    harmonizer_batch : DataFrame, optional
        The harmonizer's batch when it is not the site (the batch variables of Nested and GMM ComBat),
        indexed by subject.

    groups : Series, optional
        Each subject's group (its ``patient_id``), indexed by subject: the folds keep a group's subjects
        together (scikit-learn's ``StratifiedGroupKFold``), so no patient's lesions sit on both sides of a
        split; k is at most the number of groups of the smallest site.

    Returns
    -------
    dict of str to float
        ``accuracy`` (the balanced accuracy, mean over the folds), ``chance`` (1 / the number of sites) and
        ``folds`` (k).

    Raises
    ------
    MetricsError
        When a column is missing, a subject has more than one value of a feature, or the site is not
        constant within a subject.

    Warns
    -----
    RuntimeWarning
        When the accuracy is NaN: fewer than 2 sites, a site with fewer than 2 subjects, ``n_splits`` below
        2, no feature without missing values, or the in-fold harmonization fails (e.g. a site too small for
        a fold).

    Examples
    --------
    >>> import numpy as np
    >>> from harmony.harmonize import ComBat, simulate_site_features
    >>> cases, features = simulate_site_features(n_cases=80, n_features=10, rng=np.random.default_rng(0))
    >>> raw = site_classifier_accuracy(features)
    >>> harmonized = site_classifier_accuracy(features, harmonizer=ComBat())
    >>> bool(raw["accuracy"] > 0.8 > 0.5 > harmonized["accuracy"]), raw["chance"], raw["folds"]
    (True, 0.25, 5.0)
    """
    from sklearn import config_context
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    wide = _wide(data, subject, feature, value).dropna(axis=1)
    sites = _per_subject(data, subject, site).reindex(wide.index).astype(str).to_numpy()
    counts = pd.Series(sites).value_counts()
    chance = 1 / len(counts)
    group_of = None if groups is None else groups.reindex(wide.index).astype(str).to_numpy()
    per_site = counts if group_of is None else pd.Series(group_of).groupby(sites).nunique()
    k = int(min(n_splits, per_site.min()))
    result = {"accuracy": float("nan"), "chance": chance, "folds": float(k)}
    reasons = {"fewer than 2 sites": len(counts) < 2,
               f"site {counts.index[-1]!r} has {counts.iloc[-1]} subject(s)": counts.iloc[-1] < 2,
               f"site {per_site.idxmin()!r} has {per_site.min()} patient(s)": group_of is not None and per_site.min() < 2,
               f"n_splits is {n_splits}": n_splits < 2,
               "every feature has missing values": wide.shape[1] == 0}
    undefined = [why for why, applies in reasons.items() if applies]
    if undefined:
        warnings.warn(f"site classifier accuracy is NaN: {undefined[0]}", RuntimeWarning, stacklevel=2)
        return result
    class BalancedLogisticRegression(LogisticRegression):
        # scored by the pipeline's score(), which routes the batch to the harmonizer (a scorer would not)
        def score(self, X, y, sample_weight=None):
            return balanced_accuracy_score(y, self.predict(X), sample_weight=sample_weight)

    steps = [StandardScaler(), BalancedLogisticRegression(max_iter=2000)]
    metadata = {}
    if harmonizer is not None:
        steps.insert(0, harmonizer)  # cross_val_score fits a clone per fold
        metadata = {"batch": sites if harmonizer_batch is None else harmonizer_batch.reindex(wide.index)}
        if covariates is not None:
            metadata["covariates"] = covariates.reindex(wide.index)
    if group_of is None:
        cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)
    else:
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=random_state)
        metadata["groups"] = group_of
    try:
        with config_context(enable_metadata_routing=True), warnings.catch_warnings():
            # the classifier's own warnings (convergence, overflow in its solver); the harmonizer's stay
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"sklearn\.")
            # the in-fold refits would repeat, with fold-sized counts, what the fit on all subjects reported
            warnings.filterwarnings("ignore", category=HarmonizationWarning)
            scores = cross_val_score(make_pipeline(*steps), wide.to_numpy(), sites, cv=cv, params=metadata,
                                     error_score="raise")
    except HarmonyError as exc:
        warnings.warn(f"site classifier accuracy is NaN: ComBat failed on a cross-validation fold ({exc})",
                      RuntimeWarning, stacklevel=2)
        return result
    result["accuracy"] = float(np.mean(scores))
    return result


def truth_correlations(data: pd.DataFrame, truth: pd.DataFrame, *, subject: str = schema.CASE_ID,
                       feature: str = schema.FEATURE, value: str = schema.VALUE) -> pd.DataFrame:
    """Pearson correlation of each feature with each column of ``truth`` (indexed by subject).

    Parameters
    ----------
    data : DataFrame
        A long table, one value a row, one subject per ``subject`` and ``feature`` pair.
    truth : DataFrame
        The known truths, one column each, indexed by subject; subjects missing from it get NaN.
    subject, feature, value : str, default "case_id", "feature", "value"
        The columns holding the subject, the feature name and its value.

    Returns
    -------
    DataFrame
        One row per truth column and feature: the ``feature`` column, ``truth`` and ``estimate`` (Pearson's
        r).

    Raises
    ------
    MetricsError
        When a column is missing or a subject has more than one value of a feature.

    Examples
    --------
    >>> import numpy as np
    >>> from harmony.harmonize import simulate_site_features
    >>> cases, features = simulate_site_features(n_cases=40, n_features=5, rng=np.random.default_rng(0))
    >>> r = truth_correlations(features, cases.set_index("case_id")[["truth_size", "truth_texture"]])
    >>> r.shape, r.columns.tolist()
    ((10, 3), ['feature', 'truth', 'estimate'])
    """
    wide = _wide(data, subject, feature, value)
    truth = truth.reindex(wide.index)
    rows = [(name, str(t), r) for t in truth.columns
            for name, r in wide.corrwith(truth[t].astype(float)).items()]
    return pd.DataFrame(rows, columns=[feature, TRUTH, schema.ESTIMATE])


def covariate_effects(data: pd.DataFrame, covariates: pd.DataFrame, *, subject: str = schema.CASE_ID,
                      feature: str = schema.FEATURE, value: str = schema.VALUE) -> pd.DataFrame:
    """OLS of each feature on ``1 + covariates`` (indexed by subject): estimate, standard error, p per term.

    Covariates are encoded as in ComBat (numeric: continuous; otherwise one-hot without the first level).
    Features with missing values get NaN.

    Parameters
    ----------
    data : DataFrame
        A long table, one value a row, one subject per ``subject`` and ``feature`` pair.
    covariates : DataFrame
        The covariate columns, indexed by subject.
    subject, feature, value : str, default "case_id", "feature", "value"
        The columns holding the subject, the feature name and its value.

    Returns
    -------
    DataFrame
        One row per feature and covariate term (``age``, ``group[patient]``, ...): the ``feature`` column,
        ``term``, ``estimate``, ``se`` and ``pvalue`` (two-sided t test).

    Raises
    ------
    MetricsError
        When a column is missing or a subject has more than one value of a feature.
    HarmonizationError
        When a covariate value is missing.

    Examples
    --------
    >>> import numpy as np
    >>> from harmony.harmonize import simulate_site_features
    >>> cases, features = simulate_site_features(n_cases=40, n_features=5, rng=np.random.default_rng(0))
    >>> effects = covariate_effects(features, cases.set_index("case_id")[["age", "group"]])
    >>> effects["term"].unique().tolist(), effects.columns.tolist()[2:]
    (['age', 'group[patient]'], ['estimate', 'se', 'pvalue'])
    """
    wide = _wide(data, subject, feature, value)
    covariates = covariates.reindex(wide.index)
    specs = fit_covariates(covariates)
    terms = [t for spec in specs for t in spec.terms]
    design = np.hstack([np.ones((len(wide), 1)), covariate_matrix(specs, covariates, len(wide))])
    Y = wide.to_numpy()
    n, p = design.shape
    beta = np.linalg.lstsq(design, np.nan_to_num(Y), rcond=None)[0]
    dof = n - p
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma2 = ((Y - design @ beta) ** 2).sum(axis=0) / dof
        se = np.sqrt(np.outer(np.diag(np.linalg.pinv(design.T @ design)), sigma2))
        pvalue = 2 * stats.t.sf(np.abs(beta / se), dof) if dof > 0 else np.full_like(beta, np.nan)
    incomplete = np.isnan(Y).any(axis=0)
    rows = [(name, term, *(np.nan if incomplete[j] else float(a[i + 1, j]) for a in (beta, se, pvalue)))
            for j, name in enumerate(wide.columns) for i, term in enumerate(terms)]
    return pd.DataFrame(rows, columns=[feature, TERM, schema.ESTIMATE, STD_ERROR, PVALUE])


#: A rise of at most this fraction of the features in a site test is not reported (one feature in a hundred).
_RISE_TOLERANCE = 0.01
#: A harmonized classifier closer to chance than the raw one by less than this is "not moved toward chance".
_CHANCE_TOLERANCE = 0.02
_DISTRIBUTION_TESTS = {"kruskal_wallis": "Kruskal-Wallis", "anderson_darling": "Anderson-Darling"}


def _warn_verdicts(summary: pd.DataFrame) -> None:
    """The raw stage against each harmonized one: a distribution-level site effect that rose, a classifier not
    moved toward chance (each once, as a :class:`HarmonizationWarning` in plain words)."""
    values = summary.set_index([schema.STAGE, schema.METRIC])[schema.ESTIMATE]
    stages = list(dict.fromkeys(summary[schema.STAGE]))
    if "raw" not in stages:
        return
    for stage in (s for s in stages if s != "raw"):
        for test, name in _DISTRIBUTION_TESTS.items():
            key = f"{test}_fraction_significant"
            before, after = values.get(("raw", key)), values.get((stage, key))
            if before is not None and after is not None and after > before + _RISE_TOLERANCE:
                warnings.warn(f"the distribution-level site effect ROSE after harmonization ({stage}): {name} fraction "
                              f"of features with a site effect {before:.3f} -> {after:.3f}; the sites now differ in "
                              "shape more than before (try a feature_transform such as 'auto' or 'yeo-johnson')",
                              HarmonizationWarning, stacklevel=3)
        before = values.get(("raw", "site_classifier_accuracy"))
        after = values.get((stage, "site_classifier_accuracy"))
        chance = values.get((stage, "site_classifier_chance"))
        if before is None or after is None or not (np.isfinite(before) and np.isfinite(after)):
            continue
        if abs(after - chance) > abs(before - chance) - _CHANCE_TOLERANCE:
            warnings.warn(f"harmonization ({stage}) did not move the site classifier toward chance: balanced "
                          f"accuracy {before:.3f} before, {after:.3f} after, chance {chance:.3f} (1/"
                          f"{round(1 / chance)} sites); the site is as predictable as before", HarmonizationWarning,
                          stacklevel=3)


def harmonization_metrics(harmonized: pd.DataFrame, cases: pd.DataFrame | None = None, *,
                          batch: str = schema.SITE, covariates: Sequence[str] = (), alpha: float = 0.05,
                          n_splits: int = 5, random_state: int = 0, harmonizer=None,
                          harmonizer_batch: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """All metrics, per stage, of a harmonized table (one row per case and feature in each stage).

    With ``harmonizer`` (an unfitted ComBat with the options used), the classifier accuracy of the
    ``combat`` stage is cross-validated with the harmonizer refitted inside each fold on the raw values
    (see :func:`site_classifier_accuracy`); without it, on the harmonized values as given.

    ``batch`` is a column of ``cases`` or of the table itself; ``covariates`` and the ``truth_*`` columns
    come from ``cases``.

    Parameters
    ----------
    harmonized : DataFrame
        A harmonized table (:data:`~harmony.core.schema.HARMONIZED`), e.g. from
        :func:`~harmony.harmonize.features.harmonize_features`.
    cases : DataFrame, optional
        The cases table: the batch column (unless it is ``site``), the covariates and the ``truth_*``
        columns.
    batch : str, default "site"
        The column holding each case's batch.
    covariates : sequence of str, default ()
        Columns of ``cases`` whose effects are estimated (:func:`covariate_effects`).
    alpha : float, default 0.05
        Significance level of the site tests (:func:`site_effects`).
    n_splits : int, default 5
        Folds of the site classifier (:func:`site_classifier_accuracy`).
    random_state : int, default 0
        Seed of the classifier's fold shuffle.
    harmonizer : ComBat, optional
        An unfitted ComBat with the options used, refitted in each fold for the ``combat`` stage.
    harmonizer_batch : DataFrame, optional
        The harmonizer's batch variables when they are not ``batch`` (Nested and GMM ComBat), indexed by case.

    Returns
    -------
    dict of str to DataFrame
        ``site_effects`` (:data:`SITE_EFFECTS`), ``summary`` (:data:`SUMMARY`), ``truth_correlation``
        (:data:`TRUTH_CORRELATION`) and ``covariate_effects`` (:data:`COVARIATE_EFFECTS`), each with a
        ``stage`` column and validated against its spec.

    Raises
    ------
    MetricsError
        When the batch or a covariate column is missing, or a case has no batch.
    SchemaError
        When ``harmonized`` does not fit :data:`~harmony.core.schema.HARMONIZED`.

    Examples
    --------
    >>> import numpy as np
    >>> from harmony.harmonize import harmonize_features, simulate_site_features
    >>> cases, features = simulate_site_features(n_cases=32, n_features=4, site_shift=2.0,
    ...                                          rng=np.random.default_rng(0))
    >>> metrics = harmonization_metrics(harmonize_features(features, cases), cases, n_splits=3)
    >>> sorted(metrics)
    ['covariate_effects', 'site_effects', 'summary', 'truth_correlation']
    >>> summary = metrics["summary"].set_index(["stage", "metric"])["estimate"]
    >>> summary.loc[:, "welch_anova_fraction_significant"].to_dict()
    {'raw': 1.0, 'combat': 0.0}
    """
    table = schema.HARMONIZED.validate(harmonized, "harmonization_metrics")
    case_ids = pd.Index(table[schema.CASE_ID].unique(), name=schema.CASE_ID)
    per_case = pd.DataFrame(index=case_ids) if cases is None else cases.set_index(schema.CASE_ID).reindex(case_ids)
    if batch in per_case.columns:
        batch_of = per_case[batch]
    elif batch == schema.SITE:
        batch_of = _per_subject(table, schema.CASE_ID, schema.SITE)
    else:
        raise MetricsError(f"batch column {batch!r} is not in the cases table")
    if batch_of.isna().any():
        case = batch_of.index[batch_of.isna()][0]
        raise MetricsError(f"no {batch!r} for case {case!r} (missing from the cases table?)")
    missing = [c for c in covariates if c not in per_case.columns]
    if missing:
        raise MetricsError(f"covariate column(s) {missing} not in the cases table")
    truth = per_case[schema.truth_columns(per_case.columns)]

    site_rows, summary, corr, effects = [], [], [], []
    stages = {stage: rows.assign(**{_BATCH: rows[schema.CASE_ID].map(batch_of)})
              for stage, rows in table.groupby(schema.STAGE, sort=False)}
    for stage, rows in stages.items():
        tests = site_effects(rows, site=_BATCH, alpha=alpha).assign(**{schema.STAGE: stage})
        site_rows.append(tests)
        for test, group in tests.groupby(TEST, sort=False):
            summary.append((stage, f"{test}_fraction_significant", float(group[SIGNIFICANT].mean())))
        in_fold = harmonizer is not None and stage == "combat" and "raw" in stages
        clf = site_classifier_accuracy(stages["raw"] if in_fold else rows, site=_BATCH, n_splits=n_splits,
                                       random_state=random_state, harmonizer=harmonizer if in_fold else None,
                                       covariates=per_case[list(covariates)] if in_fold and covariates else None,
                                       harmonizer_batch=harmonizer_batch if in_fold else None,
                                       groups=per_case[schema.PATIENT_ID] if schema.PATIENT_ID in per_case else None)
        summary += [(stage, "site_classifier_accuracy", clf["accuracy"]),
                    (stage, "site_classifier_chance", clf["chance"])]
        if truth.shape[1]:
            r = truth_correlations(rows, truth).assign(**{schema.STAGE: stage})
            corr.append(r)
            summary += [(stage, f"mean_abs_correlation[{t}]", float(g[schema.ESTIMATE].abs().mean()))
                        for t, g in r.groupby(TRUTH, sort=False)]
        if covariates:
            effects.append(covariate_effects(rows, per_case[list(covariates)]).assign(**{schema.STAGE: stage}))

    _warn_verdicts(pd.DataFrame(summary, columns=[schema.STAGE, schema.METRIC, schema.ESTIMATE]))

    def combine(parts: list[pd.DataFrame], spec: TableSpec) -> pd.DataFrame:
        return spec.validate(pd.concat(parts, ignore_index=True) if parts else spec.empty(), spec.name)

    return {
        "site_effects": combine(site_rows, SITE_EFFECTS),
        "summary": SUMMARY.validate(pd.DataFrame(summary, columns=[schema.STAGE, schema.METRIC, schema.ESTIMATE]),
                                    SUMMARY.name),
        "truth_correlation": combine(corr, TRUTH_CORRELATION),
        "covariate_effects": combine(effects, COVARIATE_EFFECTS),
    }
