"""Wide feature tables: one row per subject, one column per feature, with the batch and covariates beside.

The most common way radiomic features travel (pyradiomics' batch CSV, a spreadsheet, a Parquet file from a
colleague). :func:`read_wide` turns one into harmony's long features table and a cases table, applying an
explicit missing-value policy; :func:`write_wide` writes a long table back in the input's format.

Which columns are features: every column but the id, the batch and the covariates, except pyradiomics'
``diagnostics_*`` columns and columns that are mostly text (fewer than half of their non-empty cells are
numbers). In a feature column, a cell that is not a number (``#NAME?``, ``n/a``) is missing, and counted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harmony.core import schema
from harmony.core.errors import HarmonyError
from harmony.core.files import atomic_write

__all__ = ["MISSING_POLICIES", "WIDE_SUFFIXES", "WideTable", "table_columns", "is_long_table", "read_wide",
           "write_wide", "long_to_wide"]

#: What to do with missing cells: stop (name them), drop the incomplete feature columns, or drop the
#: incomplete subjects. Subjects without a batch or a covariate, and batches left with fewer than
#: ``min_batch_size`` subjects, can only be dropped: both drop policies drop them.
MISSING_POLICIES = schema.MISSING_POLICIES
#: File suffixes read as CSV (comma or tab separated) or Parquet.
WIDE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_LONG_COLUMNS = (schema.CASE_ID, schema.FEATURE, schema.VALUE)


@dataclass
class WideTable:
    """A wide table read for harmonization: harmony's long features and cases tables, and what was dropped.

    Attributes
    ----------
    features : DataFrame
        The long features table (:data:`~harmony.core.schema.FEATURES`), variant ``original``, repeat 0.
    cases : DataFrame
        One row per subject kept: ``case_id``, ``site`` (the batch), empty ``image`` and ``mask``, and the
        covariates.
    source : pathlib.Path
        The file read.
    id_column, batch_column : str
        The input's subject id and batch columns.
    covariates : list of str
        The covariate columns.
    columns : list of str
        Every column of the input, in its order (the output keeps it).
    dropped_features, dropped_subjects : dict of str to str
        Each dropped feature column or subject id, with the reason.
    skipped_columns : dict of str to str
        Columns of the input that are not features, with the reason.
    bad_cells : int
        Cells of feature columns that were not numbers (now missing).
    """

    features: pd.DataFrame
    cases: pd.DataFrame
    source: Path
    id_column: str
    batch_column: str
    covariates: list[str]
    columns: list[str]
    dropped_features: dict[str, str] = field(default_factory=dict)
    dropped_subjects: dict[str, str] = field(default_factory=dict)
    skipped_columns: dict[str, str] = field(default_factory=dict)
    bad_cells: int = 0

    def summary(self) -> str:
        """One line saying what was kept and what was dropped, with counts.

        Returns
        -------
        str
            E.g. ``"190 subjects x 81 features kept; dropped 2 subjects (1 without 'age', 1 in a site of
            1 subject), 3 features (not numbers in 4 cells)"``.
        """
        n_subjects, n_features = len(self.cases), self.features[schema.FEATURE].nunique()
        parts = [f"{n_subjects} subject{'s' * (n_subjects != 1)} x {n_features} "
                 f"feature{'s' * (n_features != 1)} kept"]
        for what, dropped in (("subject", self.dropped_subjects), ("feature", self.dropped_features)):
            if dropped:
                reasons = pd.Series(list(dropped.values())).value_counts()
                detail = ", ".join(f"{n} {why}" for why, n in reasons.items())
                parts.append(f"dropped {len(dropped)} {what}{'s' * (len(dropped) != 1)} ({detail})")
        if self.bad_cells:
            parts.append(f"{self.bad_cells} cell{'s' * (self.bad_cells != 1)} not a number read as missing")
        return "; ".join(parts)


def is_long_table(columns: Sequence[str]) -> bool:
    """Whether a table with these columns is harmony's long features table (else it is read as wide).

    Parameters
    ----------
    columns : sequence of str
        The table's column names.

    Returns
    -------
    bool
        True when ``case_id``, ``feature`` and ``value`` are all present.

    Examples
    --------
    >>> is_long_table(["case_id", "site", "variant_id", "repeat", "feature", "value"]), is_long_table(["id", "f1"])
    (True, False)
    """
    return all(c in columns for c in _LONG_COLUMNS)


def table_columns(path: str | os.PathLike) -> list[str]:
    """The column names of a CSV, TSV or Parquet table, read from its header only.

    Parameters
    ----------
    path : str or os.PathLike
        The table.

    Returns
    -------
    list of str
        Its columns, in order.

    Raises
    ------
    HarmonyError
        The file is absent, unreadable or of an unknown format.
    """
    path = Path(path)
    kind = _format(path)
    if not path.is_file():
        raise HarmonyError(f"{path}: features table not found")
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        return [str(c) for c in pd.read_csv(path, sep="," if kind == "csv" else "\t", nrows=0).columns]
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarmonyError(f"{path}: cannot read the table ({first})") from None


def _format(path: Path) -> str:
    kind = WIDE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise HarmonyError(f"{path}: cannot tell the table's format from its suffix {path.suffix!r} "
                           f"(use one of {sorted(WIDE_SUFFIXES)})")
    return kind


def _read_text_table(path: Path) -> pd.DataFrame:
    kind = _format(path)
    if not path.is_file():
        raise HarmonyError(f"{path}: features table not found")
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
            return frame.astype({c: "object" for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])})
        return pd.read_csv(path, sep="," if kind == "csv" else "\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarmonyError(f"{path}: cannot read the table ({first})") from None


def _cells(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(numbers with NaN for missing, mask of non-empty cells that are not numbers)."""
    if pd.api.types.is_numeric_dtype(column):
        values = column.astype("float64")
        return values, pd.Series(False, index=column.index)
    text = column.astype("string").str.strip()
    empty = text.isna() | (text == "")
    values = pd.to_numeric(text.where(~empty), errors="coerce").astype("float64")
    return values, values.isna() & ~empty


def _check_columns(frame: pd.DataFrame, path: Path, id_column: str, batch: str, covariates: Sequence[str],
                   features: Sequence[str] | None) -> None:
    wanted = {"--id": [id_column], "--batch": [batch], "--covariates": list(covariates),
              "--features": list(features or ())}
    for option, columns in wanted.items():
        for column in columns:
            if column not in frame.columns:
                shown = list(frame.columns[:12]) + (["..."] if len(frame.columns) > 12 else [])
                raise HarmonyError(f"{path}: {option} column {column!r} is not in the table (columns: {shown})")
    ids = frame[id_column].astype("string").str.strip()
    empty = ids.isna() | (ids == "")
    if empty.any():
        raise HarmonyError(f"{path}: column {id_column!r} is empty in row {int(np.flatnonzero(empty)[0]) + 2}")
    duplicated = ids[ids.duplicated()]
    if not duplicated.empty:
        raise HarmonyError(f"{path}: subject id {duplicated.iloc[0]!r} appears more than once in {id_column!r}")


def read_wide(path: str | os.PathLike, *, id_column: str, batch: str, covariates: Sequence[str] = (),
              features: Sequence[str] | None = None, missing: str = "stop", min_batch_size: int = 2) -> WideTable:
    """Read a wide features table (CSV, TSV or Parquet) into harmony's long features and cases tables.

    Parameters
    ----------
    path : str or os.PathLike
        The table: one row per subject.
    id_column : str
        The column of subject ids (unique, never empty).
    batch : str
        The column of each subject's batch (site, scanner, manufacturer).
    covariates : sequence of str, default ()
        Columns whose effects harmonization keeps; numeric when every non-empty cell is a number, else
        categorical.
    features : sequence of str, optional
        The feature columns; default: every other column that holds numbers (see the module's rule).
    missing : {"stop", "drop-features", "drop-subjects"}, default "stop"
        The missing-value policy (:data:`MISSING_POLICIES`).
    min_batch_size : int, default 2
        Fewest subjects a batch needs to be harmonized.

    Returns
    -------
    WideTable
        The tables, and every dropped or skipped column and subject with its reason.

    Raises
    ------
    HarmonyError
        The file cannot be read, a named column is absent, an id is empty or repeated, no feature column is
        left, or (policy ``stop``) a cell is missing or a batch too small — the message gives the counts, the
        first instance and the options that drop them.

    Examples
    --------
    >>> import tempfile
    >>> text = "id,scanner,age,f1,f2\\ns1,A,60,1.0,2\\ns2,A,,1.5,#NAME?\\ns3,B,70,2.0,3\\ns4,B,71,2.5,4\\ns5,A,65,1.2,2.5\\n"
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "features.csv"
    ...     _ = path.write_text(text)
    ...     table = read_wide(path, id_column="id", batch="scanner", covariates=["age"], missing="drop-subjects")
    >>> table.summary()
    "4 subjects x 2 features kept; dropped 1 subject (1 without 'age'); 1 cell not a number read as missing"
    >>> table.dropped_subjects
    {'s2': "without 'age'"}
    """
    path = Path(path)
    if missing not in MISSING_POLICIES:
        raise HarmonyError(f"--missing must be one of {list(MISSING_POLICIES)}, got {missing!r}")
    if min_batch_size < 1:
        raise HarmonyError(f"min_batch_size must be >= 1, got {min_batch_size!r}")
    frame = _read_text_table(path)
    covariates = list(covariates)
    _check_columns(frame, path, id_column, batch, covariates, features)
    frame = frame.set_index(frame[id_column].astype("string").str.strip().astype(str))
    roles = {id_column, batch, *covariates}
    skipped: dict[str, str] = {}
    if features is None:
        features = []
        for column in frame.columns:
            if column in roles:
                continue
            if str(column).startswith("diagnostics_"):
                skipped[column] = "pyradiomics diagnostics"
                continue
            values, bad = _cells(frame[column])
            filled = values.notna() | bad
            if filled.any() and bad.sum() * 2 > filled.sum():
                skipped[column] = "not numbers"
            else:
                features.append(column)
    features = [c for c in features if c not in roles]
    if not features:
        raise HarmonyError(f"{path}: no feature column left (columns that are not numbers: {sorted(skipped)})")

    X = pd.DataFrame({c: _cells(frame[c])[0] for c in features}, index=frame.index)
    bad_cells = {c: int(_cells(frame[c])[1].sum()) for c in features}
    n_bad = sum(bad_cells.values())
    dropped_subjects: dict[str, str] = {}
    dropped_features: dict[str, str] = {}

    labels = frame[batch].astype("string").str.strip()
    no_batch = labels.isna() | (labels == "")
    cov = pd.DataFrame(index=frame.index)
    for column in covariates:
        values, bad = _cells(frame[column])
        text = frame[column].astype("string").str.strip()
        cov[column] = values if not bad.any() else text.where(text != "")
    incomplete_covariate = {c: cov[c].isna() for c in covariates}

    if missing == "stop":
        problems = []
        if no_batch.any():
            problems.append(f"{int(no_batch.sum())} subject(s) without {batch!r} (first {no_batch.idxmax()!r})")
        for column, absent in incomplete_covariate.items():
            if absent.any():
                problems.append(f"{int(absent.sum())} subject(s) without {column!r} (first {absent.idxmax()!r})")
        holes = X.isna()
        if holes.to_numpy().any():
            column = holes.any().idxmax()
            row = holes[column].idxmax()
            cell = frame.at[row, column]
            what = f"{cell!r} is not a number" if bad_cells[column] and str(cell).strip() else "empty"
            problems.append(f"{int(holes.to_numpy().sum())} missing feature cell(s) in {int(holes.any().sum())} "
                            f"column(s) (first: column {column!r}, subject {row!r}: {what})")
        if problems:
            raise HarmonyError(f"{path}: " + "; ".join(problems)
                               + "; use --missing drop-subjects or --missing drop-features to drop them")
    else:
        for subject in frame.index[no_batch]:
            dropped_subjects[subject] = f"without {batch!r}"
        for column, absent in incomplete_covariate.items():
            for subject in frame.index[absent]:
                dropped_subjects.setdefault(subject, f"without {column!r}")
        keep = ~frame.index.isin(list(dropped_subjects))
        if missing == "drop-subjects":
            for subject in X.index[keep & X.isna().any(axis=1).to_numpy()]:
                dropped_subjects[subject] = "missing feature values"
        else:
            for column in X.columns[X[keep].isna().any().to_numpy()]:
                dropped_features[column] = "not numbers" if bad_cells[column] else "missing values"
    keep = ~frame.index.isin(list(dropped_subjects))
    sizes = labels[keep].value_counts()
    small = sizes[sizes < min_batch_size]
    if len(small):
        if missing == "stop":
            raise HarmonyError(f"{path}: {batch} {small.index[0]!r} has {int(small.iloc[0])} subject(s), fewer than "
                               f"{min_batch_size} (batches too small: {sorted(small.index)}); use --missing "
                               "drop-subjects to drop them")
        for subject in frame.index[keep & labels.isin(small.index).to_numpy()]:
            dropped_subjects[subject] = f"in a {batch} of fewer than {min_batch_size} subjects"
    keep = ~frame.index.isin(list(dropped_subjects))
    X = X.loc[keep, [c for c in X.columns if c not in dropped_features]]
    if X.empty:
        raise HarmonyError(f"{path}: nothing left to harmonize after dropping {len(dropped_subjects)} subject(s) "
                           f"and {len(dropped_features)} feature(s) (missing-value policy {missing!r})")

    long = X.rename_axis(schema.CASE_ID).reset_index().melt(id_vars=schema.CASE_ID, var_name=schema.FEATURE,
                                                            value_name=schema.VALUE)
    site_of = labels[keep]
    long.insert(1, schema.SITE, long[schema.CASE_ID].map(site_of).astype(str))
    long.insert(2, schema.VARIANT_ID, schema.ORIGINAL)
    long.insert(3, schema.REPEAT, 0)
    cases = pd.DataFrame({schema.CASE_ID: X.index.astype(str), schema.SITE: site_of.astype(str).to_numpy(),
                          schema.IMAGE: "", schema.MASK: ""})
    for column in covariates:
        cases[column] = cov.loc[keep, column].to_numpy()
    return WideTable(features=schema.FEATURES.validate(long, str(path)), cases=schema.CASES.validate(cases, str(path)),
                     source=path, id_column=id_column, batch_column=batch, covariates=covariates,
                     columns=[str(c) for c in frame.columns], dropped_features=dropped_features,
                     dropped_subjects=dropped_subjects, skipped_columns=skipped, bad_cells=n_bad)


def long_to_wide(features: pd.DataFrame, *, index: str = schema.CASE_ID) -> pd.DataFrame:
    """One row per ``index`` value, one column per feature, from a long table (one value a row).

    Parameters
    ----------
    features : DataFrame
        Long rows with ``index``, ``feature`` and ``value`` columns, one row per (index, feature).
    index : str, default "case_id"
        The column whose values become the rows.

    Returns
    -------
    DataFrame
        Indexed by ``index``, columns in the order features first appear.

    Raises
    ------
    HarmonyError
        When an (index, feature) pair appears twice.

    Examples
    --------
    >>> long = pd.DataFrame({"case_id": ["a", "a", "b"], "feature": ["f2", "f1", "f2"], "value": [1.0, 2.0, 3.0]})
    >>> long_to_wide(long).to_dict("index")
    {'a': {'f2': 1.0, 'f1': 2.0}, 'b': {'f2': 3.0, 'f1': nan}}
    """
    pairs = features[[index, schema.FEATURE]]
    repeated = pairs.duplicated()
    if repeated.any():
        first = pairs[repeated].iloc[0]
        raise HarmonyError(f"{index} {first[index]!r} has feature {first[schema.FEATURE]!r} more than once")
    order = pd.unique(features[schema.FEATURE].astype(str))
    wide = features.pivot(index=index, columns=schema.FEATURE, values=schema.VALUE)
    wide.columns = wide.columns.astype(str)
    wide = wide[list(order)]
    wide.columns.name = None
    return wide


def write_wide(harmonized: pd.DataFrame, table: WideTable, path: str | os.PathLike) -> Path:
    """Write harmonized long rows as a wide table in the input's format, columns in the input's order.

    Parameters
    ----------
    harmonized : DataFrame
        Long rows (``case_id``, ``feature``, ``value``) of the subjects and features of ``table``.
    table : WideTable
        What :func:`read_wide` returned: its id, batch and covariate columns are written back.
    path : str or os.PathLike
        The file to write, atomically; CSV, TSV or Parquet by its suffix.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    HarmonyError
        When the suffix names no known format.
    """
    path = Path(path)
    kind = _format(path)
    wide = long_to_wide(harmonized)
    cases = table.cases.set_index(schema.CASE_ID).loc[wide.index]
    out = pd.DataFrame({table.id_column: wide.index.astype(str)}, index=wide.index)
    out[table.batch_column] = cases[schema.SITE]
    for column in table.covariates:
        out[column] = cases[column]
    out = pd.concat([out, wide], axis=1)
    out = out[[c for c in table.columns if c in out.columns] + [c for c in out.columns if c not in table.columns]]
    out = out.reset_index(drop=True)
    if kind == "parquet":
        return atomic_write(path, lambda tmp: out.to_parquet(tmp, index=False))
    return atomic_write(path, lambda tmp: out.to_csv(tmp, index=False, sep="," if kind == "csv" else "\t"))
