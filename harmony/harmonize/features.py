"""Harmonizing a long features table: the original variant's rows to a cases x features matrix and back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from harmony.core import schema
from harmony.harmonize.combat import ComBat
from harmony.harmonize.inputs import HarmonizationError
from harmony.harmonize.methods import model_covariates

__all__ = ["harmonization_inputs", "harmonize_features"]


def harmonization_inputs(features: pd.DataFrame, cases: pd.DataFrame | None = None, *, batch: str = schema.SITE,
                         covariates: Sequence[str] = (), batch_columns: Sequence[str] | None = None
                         ) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series | pd.DataFrame, pd.DataFrame | None]:
    """The rows ComBat harmonizes and its inputs: (rows, X cases x features, batch, covariates).

    The rows are those of the ``original`` variant, first repeat of each case: one row per case and
    feature (perturbed variants measure reliability, not subjects). ``batch`` is a column of ``cases`` or,
    for ``site``, of the features table; ``covariates`` are columns of ``cases``.

    Parameters
    ----------
    features : DataFrame
        A long features table (:data:`~harmony.core.schema.FEATURES`).
    cases : DataFrame, optional
        A cases table (:data:`~harmony.core.schema.CASES`) holding every case of ``features``; needed for a
        batch column other than ``site`` and for covariates.
    batch : str, default "site"
        The column holding each case's batch (scanner, site).
    covariates : sequence of str, default ()
        Columns of ``cases`` whose effects ComBat preserves.
    batch_columns : sequence of str, optional
        Several batch variables (Nested and GMM ComBat): columns of ``cases`` (``batch`` itself may be one).

    Returns
    -------
    rows : DataFrame
        The rows harmonized: the ``original`` variant, first repeat of each case.
    X : DataFrame
        ``rows`` as cases (index ``case_id``) x features.
    batch : Series or DataFrame
        Each case's batch, in X's row order; with ``batch_columns``, a table of those columns.
    covariates : DataFrame or None
        The covariate columns, in X's row order; None without covariates.

    Raises
    ------
    HarmonizationError
        When there are no ``original`` rows, a case is not in ``cases`` or has another site there, or the
        batch or a covariate column is missing.
    SchemaError
        When ``features`` or ``cases`` does not fit its table spec.

    Examples
    --------
    >>> import numpy as np
    >>> from harmony.harmonize import simulate_site_features
    >>> cases, features = simulate_site_features(n_cases=8, n_features=3, rng=np.random.default_rng(0))
    >>> rows, X, batch, covariates = harmonization_inputs(features, cases, covariates=["age"])
    >>> X.shape, batch.tolist()[:3], list(covariates.columns)
    ((8, 3), ['scanner1', 'scanner2', 'scanner3'], ['age'])
    """
    features = schema.FEATURES.validate(features, "harmonize_features")
    rows = features[features[schema.VARIANT_ID] == schema.ORIGINAL]
    if rows.empty:
        raise HarmonizationError(f"the features table has no rows of variant {schema.ORIGINAL!r} to harmonize")
    first = rows.groupby(schema.CASE_ID)[schema.REPEAT].transform("min")
    rows = rows[rows[schema.REPEAT] == first].reset_index(drop=True)
    X = rows.pivot(index=schema.CASE_ID, columns=schema.FEATURE, values=schema.VALUE)
    X.columns.name = None
    per_case = None
    if cases is not None:
        cases = schema.CASES.validate(cases, "cases")
        per_case = cases.set_index(schema.CASE_ID)
        absent = [c for c in X.index if c not in per_case.index]
        if absent:
            raise HarmonizationError(f"case {absent[0]!r} of the features table is not in the cases table "
                                     f"({len(absent)} such case(s))")
        per_case = per_case.loc[X.index]
        sites = rows.drop_duplicates(schema.CASE_ID).set_index(schema.CASE_ID)[schema.SITE].loc[X.index]
        differ = sites.astype(str) != per_case[schema.SITE].astype(str)
        if differ.any():
            case = differ[differ].index[0]
            raise HarmonizationError(f"case {case!r}: site {sites[case]!r} in the features table but "
                                     f"{per_case.loc[case, schema.SITE]!r} in the cases table "
                                     f"({int(differ.sum())} such case(s)); the two tables must describe the same "
                                     "scans")
    if per_case is not None and batch in per_case.columns:
        labels = per_case[batch]
    elif batch == schema.SITE:
        labels = rows.drop_duplicates(schema.CASE_ID).set_index(schema.CASE_ID)[schema.SITE].loc[X.index]
    else:
        raise HarmonizationError(f"batch column {batch!r} is not in the cases table"
                                 + ("" if cases is not None else " (no cases table given)"))
    cov = None
    if covariates:
        if per_case is None:
            raise HarmonizationError(f"covariates {list(covariates)} need a cases table")
        missing = [c for c in covariates if c not in per_case.columns]
        if missing:
            raise HarmonizationError(f"covariate column(s) {missing} are not in the cases table (columns: "
                                     f"{list(per_case.columns)})")
        cov = per_case[list(covariates)]
    if batch_columns:
        missing = [c for c in batch_columns if c != batch and (per_case is None or c not in per_case.columns)]
        if missing:
            raise HarmonizationError(f"batch column(s) {missing} are not in the cases table"
                                     + ("" if per_case is None else f" (columns: {list(per_case.columns)})"))
        labels = pd.DataFrame({c: labels if c == batch else per_case[c] for c in batch_columns}, index=X.index)
    return rows, X, labels, cov


def harmonize_features(features: pd.DataFrame, cases: pd.DataFrame | None = None, *, batch: str = schema.SITE,
                       covariates: Sequence[str] | None = None, model: Any = None,
                       batch_columns: Sequence[str] | None = None, **combat_kwargs: Any) -> pd.DataFrame:
    """Harmonize the original variant's features: a :data:`~harmony.core.schema.HARMONIZED` table (raw + combat).

    Fits ``ComBat(**combat_kwargs)`` on all cases, or applies a fitted ``model`` (whose covariates are used
    when ``covariates`` is None). See :func:`harmonization_inputs` for which rows are harmonized.

    Parameters
    ----------
    features : DataFrame
        A long features table (:data:`~harmony.core.schema.FEATURES`).
    cases : DataFrame, optional
        A cases table holding the batch column (unless it is ``site``) and the covariates.
    batch : str, default "site"
        The column holding each case's batch (scanner, site).
    covariates : sequence of str, optional
        Columns of ``cases`` whose effects ComBat preserves; by default none, or the fitted ``model``'s.
    model : estimator, optional
        A fitted model to apply instead of fitting one: ComBat or another method of
        :mod:`harmony.harmonize.methods`.
    batch_columns : sequence of str, optional
        The batch variables of a Nested or GMM ComBat ``model`` (see :func:`harmonization_inputs`).
    **combat_kwargs
        Options of :class:`~harmony.harmonize.combat.ComBat` (e.g. ``parametric=False``), when no ``model``.

    Returns
    -------
    DataFrame
        The harmonized rows twice, with a ``stage`` column: ``raw`` (the values as given) and ``combat``
        (harmonized), validated against :data:`~harmony.core.schema.HARMONIZED`.

    Raises
    ------
    HarmonizationError
        When both ``model`` and ComBat options are given, or the inputs cannot be harmonized (see
        :func:`harmonization_inputs` and :class:`~harmony.harmonize.combat.ComBat`).

    See Also
    --------
    harmony.harmonize.harmonization_metrics : the site effect and the biology, per stage, of the result.

    Examples
    --------
    >>> import numpy as np
    >>> from harmony.harmonize import simulate_site_features, site_effects
    >>> cases, features = simulate_site_features(n_cases=40, n_features=5, rng=np.random.default_rng(0))
    >>> harmonized = harmonize_features(features, cases, covariates=["age", "group"])
    >>> harmonized.groupby("stage").size().to_dict()
    {'combat': 200, 'raw': 200}
    >>> combat = harmonized[harmonized["stage"] == "combat"]
    >>> int(site_effects(features)["significant"].sum()), int(site_effects(combat)["significant"].sum())
    (16, 0)
    """
    if model is not None and combat_kwargs:
        raise HarmonizationError(f"give a fitted model or ComBat options, not both (got {sorted(combat_kwargs)})")
    if covariates is None:
        covariates = model_covariates(model) if model is not None else []
    rows, X, labels, cov = harmonization_inputs(features, cases, batch=batch, covariates=covariates,
                                                batch_columns=batch_columns)
    if model is None:
        model = ComBat(**combat_kwargs).fit(X, batch=labels, covariates=cov)
    harmonized = model.transform(X, batch=labels, covariates=cov)
    long = harmonized.rename_axis(index=schema.CASE_ID, columns=schema.FEATURE).stack().rename(schema.VALUE)
    combat = rows.drop(columns=[schema.VALUE]).join(long, on=[schema.CASE_ID, schema.FEATURE])
    out = pd.concat([rows.assign(**{schema.STAGE: "raw"}), combat.assign(**{schema.STAGE: "combat"})],
                    ignore_index=True)
    return schema.HARMONIZED.validate(out, "harmonize_features")
