"""Column names, dtypes and validators of every table harmony passes between stages (see docs/design.md).

This is the one place the column names are spelled; other modules import the constants.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harmony.core.errors import SchemaError

if TYPE_CHECKING:  # pandas is imported where it is used, so `harmony validate` does not load it
    import pandas as pd

__all__ = [
    "CASE_ID", "SITE", "IMAGE", "MASK", "VARIANT_ID", "KIND", "PARAMS", "SEED", "REPEAT", "FEATURE", "VALUE",
    "ERROR", "PERTURBATION", "METRIC", "ESTIMATE", "CI_LOW", "CI_HIGH", "N_CASES", "N_VARIANTS", "CATEGORY",
    "STABLE", "REASON", "STAGE", "PATIENT_ID", "LABEL", "ROI", "CASE_ATTRIBUTES", "MISSING_POLICIES",
    "TABLE_FORMATS", "TRUTH_PREFIX", "DICOM_PREFIX", "ORIGINAL", "DIAGNOSTICS_PREFIX", "ICC_METRICS", "RELIABILITY_METRICS", "STAGES", "Column", "TableSpec", "CASES",
    "VARIANTS", "FEATURES", "FAILURES", "RELIABILITY", "HARMONIZED", "TABLES", "covariate_columns", "truth_columns",
    "wide_features",
]

# -- column names ---------------------------------------------------------------------------------
CASE_ID = "case_id"
SITE = "site"
IMAGE = "image"
MASK = "mask"
VARIANT_ID = "variant_id"
KIND = "kind"
PARAMS = "params"
SEED = "seed"
REPEAT = "repeat"
FEATURE = "feature"
VALUE = "value"
ERROR = "error"
PERTURBATION = "perturbation"
METRIC = "metric"
ESTIMATE = "estimate"
CI_LOW = "ci_low"
CI_HIGH = "ci_high"
N_CASES = "n_cases"
N_VARIANTS = "n_variants"
CATEGORY = "category"
STABLE = "stable"
REASON = "reason"
STAGE = "stage"
#: Optional cases columns: the patient a case (lesion) belongs to, the case's own mask label, its ROI name.
PATIENT_ID = "patient_id"
LABEL = "label"
ROI = "roi"
#: Optional cases columns that describe a case rather than measure its subject: never covariates.
CASE_ATTRIBUTES = (PATIENT_ID, LABEL, ROI)
#: What to do with the missing cells of a wide table (``harmony harmonize --missing``): see
#: :func:`harmony.core.wide.read_wide`.
MISSING_POLICIES = ("stop", "drop-features", "drop-subjects")
#: Formats harmony writes wide tables in (``harmony export --format``).
TABLE_FORMATS = ("parquet", "csv")
#: Prefix of the ground-truth columns of simulated cohorts (``truth_size``, ``truth_heterogeneity`` ...).
TRUTH_PREFIX = "truth_"
#: Prefix of the columns that record where a case converted from DICOM came from (source paths and UIDs).
DICOM_PREFIX = "dicom_"
#: ``variant_id`` of the identity perturbation chain, always present.
ORIGINAL = "original"
#: Prefix pyradiomics gives the keys that describe the extraction rather than measure the image.
DIAGNOSTICS_PREFIX = "diagnostics_"
ICC_METRICS = ("ICC(1,1)", "ICC(A,1)", "ICC(C,1)", "ICC(1,k)", "ICC(A,k)", "ICC(C,k)")
RELIABILITY_METRICS = ICC_METRICS + ("CCC", "CoV", "range")  # range: descriptive, in feature units
STAGES = ("raw", "combat")
_KINDS = {"str", "float64", "int64", "bool"}


@dataclass(frozen=True)
class Column:
    """One column of a :class:`TableSpec`: its name, kind of value and what it may hold.

    Parameters
    ----------
    name : str
        The column name.
    dtype : {"str", "float64", "int64", "bool"}
        The kind of value; :meth:`TableSpec.validate` coerces to it (text, floats, integers, booleans).
    nullable : bool, default False
        Missing values are allowed.
    choices : tuple, optional
        The allowed values.
    categorical : bool, default False
        Held as a pandas categorical (a label repeated over many rows).

    Raises
    ------
    ValueError
        ``dtype`` is not one of the four kinds.

    Examples
    --------
    >>> Column("metric", "str", choices=("ICC(A,1)", "CCC"))
    Column(name='metric', dtype='str', nullable=False, choices=('ICC(A,1)', 'CCC'), categorical=False)
    """

    name: str
    dtype: str  # one of "str", "float64", "int64", "bool"
    nullable: bool = False
    choices: tuple | None = None
    #: A label repeated over many rows (case, site, variant, feature of the long tables): held as a pandas
    #: categorical, which stores each label once and lets the statistics use its integer codes directly.
    categorical: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in _KINDS:
            raise ValueError(f"Column {self.name!r}: dtype must be one of {sorted(_KINDS)}, got {self.dtype!r}")


@dataclass(frozen=True)
class TableSpec:
    """A table contract: required columns in order, an optional unique key, and whether extra columns pass.

    Parameters
    ----------
    name : str
        The table's name, for the messages ("features").
    columns : tuple of Column
        The required columns, in order.
    key : tuple of str, default ()
        Columns whose values must be unique together.
    allow_extra : bool, default False
        Columns beyond ``columns`` are kept (after them) instead of refused.
    doc : str, default ""
        What a row is.

    Examples
    --------
    >>> spec = TableSpec("scores", (Column("case_id", "str"), Column("score", "float64", nullable=True)),
    ...                  key=("case_id",))
    >>> spec.names
    ['case_id', 'score']
    >>> import pandas as pd
    >>> spec.validate(pd.DataFrame({"case_id": ["a", "a"], "score": [1, 2]}), source="scores.csv")
    Traceback (most recent call last):
    ...
    harmony.core.errors.SchemaError: scores.csv: scores table has 2 rows with a duplicated key ['case_id'], e.g. ...
    """

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    allow_extra: bool = False
    doc: str = field(default="", compare=False)

    @property
    def names(self) -> list[str]:
        """The required columns' names, in order."""
        return [c.name for c in self.columns]

    def subset(self, names: list[str] | tuple[str, ...]) -> TableSpec:
        """The contract of some of the columns, for a reader that needs no more (extra columns still pass).

        Parameters
        ----------
        names : list of str
            Columns of this spec.

        Returns
        -------
        TableSpec
            Those columns in this spec's order; the key keeps its columns among them.

        Raises
        ------
        ValueError
            A name that is not a column of this spec.

        Examples
        --------
        >>> FEATURES.subset(["feature", "value"]).names
        ['feature', 'value']
        """
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise ValueError(f"{self.name} table has no column(s) {unknown}; it has {self.names}")
        return TableSpec(self.name, tuple(c for c in self.columns if c.name in names),
                         key=tuple(k for k in self.key if k in names), allow_extra=True, doc=self.doc)

    def empty(self) -> pd.DataFrame:
        """A zero-row frame with the right columns and dtypes.

        Returns
        -------
        DataFrame
            No rows; categorical columns as ``category``, the others with their dtype.

        Examples
        --------
        >>> FAILURES.empty().dtypes.astype(str).to_dict()
        {'case_id': 'str', 'variant_id': 'str', 'repeat': 'int64', 'error': 'str'}
        """
        import pandas as pd
        return pd.DataFrame({c.name: pd.Series([], dtype="category" if c.categorical else _pandas_dtype(c.dtype))
                             for c in self.columns})

    def validate(self, df: pd.DataFrame, source: str | None = None) -> pd.DataFrame:
        """Check and coerce ``df``; return a copy with the spec's columns first, in order.

        Parameters
        ----------
        df : DataFrame
            The table to check; it is not modified.
        source : str, optional
            Where it came from (a file or stage), for the messages.

        Returns
        -------
        DataFrame
            A copy with a fresh ``RangeIndex``: the spec's columns in order (coerced to their dtypes;
            categorical ones as categoricals), then any extra columns.

        Raises
        ------
        SchemaError
            Naming the table (and ``source``), the column and an offending value: ``df`` is not a
            DataFrame, a column is missing (or extra, when not allowed), a value is missing, of the wrong
            kind or not one of the choices, or the key is duplicated.

        Examples
        --------
        >>> import pandas as pd
        >>> VARIANTS.validate(pd.DataFrame({"variant_id": ["v1"], "kind": ["noise"], "params": ["[]"],
        ...                                 "seed": ["x"]}), source="variants.csv")
        Traceback (most recent call last):
        ...
        harmony.core.errors.SchemaError: variants.csv: variants table, column 'seed': expected an integer, got 'x'
        """
        import pandas as pd
        where = f"{source}: " if source else ""
        if not isinstance(df, pd.DataFrame):
            raise SchemaError(f"{where}{self.name} table must be a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in self.names if c not in df.columns]
        if missing:
            raise SchemaError(
                f"{where}{self.name} table is missing column(s) {missing}; it has {list(map(str, df.columns))}"
            )
        extra = [c for c in df.columns if c not in self.names]
        if extra and not self.allow_extra:
            raise SchemaError(f"{where}{self.name} table has unexpected column(s) {extra}")
        out = df[self.names + extra].copy()
        out.index = pd.RangeIndex(len(out))
        for col in self.columns:
            out[col.name] = _coerce(out[col.name], col, f"{where}{self.name} table, column {col.name!r}")
        if self.key and len(out):
            dup = out.duplicated(list(self.key), keep=False)
            if dup.any():
                first = out.loc[dup, list(self.key)].iloc[0].to_dict()
                raise SchemaError(
                    f"{where}{self.name} table has {int(dup.sum())} rows with a duplicated key "
                    f"{list(self.key)}, e.g. {first}"
                )
        return out


def _pandas_dtype(kind: str):
    return {"str": "str", "float64": "float64", "int64": "int64", "bool": "bool"}[kind]


def _show(value) -> str:
    """repr of a cell without numpy's type wrapper (``1.5``, not ``np.float64(1.5)``)."""
    import numpy as np
    return repr(value.item() if isinstance(value, np.generic) else value)


def _coerce(series: pd.Series, col: Column, where: str) -> pd.Series:
    import numpy as np
    import pandas as pd
    null = series.isna()
    if null.any() and not col.nullable:
        row = int(np.flatnonzero(null.to_numpy())[0])
        raise SchemaError(f"{where}: missing value in row {row}")
    if col.dtype == "str" and col.categorical and isinstance(series.dtype, pd.CategoricalDtype):
        categories = series.cat.categories
        bad = [c for c in categories if not isinstance(c, str)]
        if bad:
            raise SchemaError(f"{where}: expected text, got {_show(bad[0])} ({type(bad[0]).__name__})")
        out = series.cat.remove_unused_categories()  # a filtered table lists only the labels it holds
    elif col.dtype == "str":
        if not isinstance(series.dtype, pd.StringDtype):  # a string dtype holds nothing but text and NA
            is_text = np.fromiter((isinstance(v, str) for v in series), dtype=bool, count=len(series))
            bad = ~null.to_numpy() & ~is_text
            if bad.any():
                value = series[bad].iloc[0]
                raise SchemaError(f"{where}: expected text, got {_show(value)} ({type(value).__name__})")
        out = series.astype("str") if not null.any() else series.astype(object).where(~null, None).astype("str")
        if col.categorical:
            out = out.astype("category")
    elif col.dtype == "bool":
        is_bool = np.fromiter((isinstance(v, (bool, np.bool_)) for v in series), dtype=bool, count=len(series))
        if not is_bool.all():
            raise SchemaError(f"{where}: expected true/false, got {_show(series[~is_bool].iloc[0])}")
        out = series.astype(bool)
    elif col.dtype == "int64":
        numeric = pd.to_numeric(series, errors="coerce")
        bad = numeric.isna() | (numeric != np.round(numeric))
        if bad.any():
            raise SchemaError(f"{where}: expected an integer, got {_show(series[bad].iloc[0])}")
        out = numeric.astype("int64")
    else:  # float64
        numeric = pd.to_numeric(series, errors="coerce")
        bad = numeric.isna() & ~null
        if bad.any():
            raise SchemaError(f"{where}: expected a number, got {_show(series[bad].iloc[0])}")
        out = numeric.astype("float64")
    if col.choices is not None:
        bad = ~out.isin(col.choices) & ~null
        if bad.any():
            raise SchemaError(f"{where}: {_show(out[bad].iloc[0])} is not one of {list(col.choices)}")
    return out


def _cols(*specs: tuple) -> tuple[Column, ...]:
    return tuple(Column(*s) for s in specs)


CASES = TableSpec(
    "cases",
    _cols((CASE_ID, "str"), (SITE, "str"), (IMAGE, "str"), (MASK, "str")),
    key=(CASE_ID,),
    allow_extra=True,  # covariates and truth_* columns
    doc="One row per case; extra columns are covariates (numeric or categorical) or truth_* values.",
)


VARIANTS = TableSpec(
    "variants",
    _cols((VARIANT_ID, "str"), (KIND, "str"), (PARAMS, "str"), (SEED, "int64")),
    key=(VARIANT_ID,),
    allow_extra=True,
    doc="One row per perturbation chain; params is the chain's JSON text; 'original' is the identity.",
)


FEATURES = TableSpec(
    "features",
    (Column(CASE_ID, "str", categorical=True), Column(SITE, "str", categorical=True),
     Column(VARIANT_ID, "str", categorical=True), Column(REPEAT, "int64"), Column(FEATURE, "str", categorical=True),
     Column(VALUE, "float64", nullable=True)),
    key=(CASE_ID, VARIANT_ID, REPEAT, FEATURE),
    doc="Long format, one feature value a row; feature is the pyradiomics key.",
)


FAILURES = TableSpec(
    "failures",
    _cols((CASE_ID, "str"), (VARIANT_ID, "str"), (REPEAT, "int64"), (ERROR, "str")),
    key=(CASE_ID, VARIANT_ID, REPEAT),
    doc="Tasks that raised, with the error text; their features are absent from the features table.",
)


RELIABILITY = TableSpec(
    "reliability",
    _cols((FEATURE, "str"), (PERTURBATION, "str"), (METRIC, "str", False, RELIABILITY_METRICS),
          (ESTIMATE, "float64", True), (CI_LOW, "float64", True), (CI_HIGH, "float64", True),
          (N_CASES, "int64"), (N_VARIANTS, "int64"), (CATEGORY, "str"), (STABLE, "bool")),
    key=(FEATURE, PERTURBATION, METRIC),
    allow_extra=True,
    doc="Per feature, perturbation kind and metric: estimate with 95% CI, category and stability flag.",
)


HARMONIZED = TableSpec(
    "harmonized",
    FEATURES.columns + _cols((STAGE, "str", False, STAGES)),
    key=(CASE_ID, VARIANT_ID, REPEAT, FEATURE, STAGE),
    doc="The features table before (raw) and after (combat) harmonization.",
)


TABLES = {t.name: t for t in (CASES, VARIANTS, FEATURES, FAILURES, RELIABILITY, HARMONIZED)}


def covariate_columns(cases: pd.DataFrame) -> list[str]:
    """Columns of a cases table that are covariates: not required, ``truth_*``, ``dicom_*`` or case attributes.

    The case attributes are :data:`CASE_ATTRIBUTES`.

    Parameters
    ----------
    cases : DataFrame
        A cases table.

    Returns
    -------
    list of str
        In the table's column order.

    Examples
    --------
    >>> import pandas as pd
    >>> cases = pd.DataFrame(columns=["case_id", "site", "image", "mask", "age", "truth_size", "group", "patient_id"])
    >>> covariate_columns(cases)
    ['age', 'group']
    """
    fixed = set(CASES.names) | set(CASE_ATTRIBUTES)
    return [c for c in cases.columns if c not in fixed and not str(c).startswith((TRUTH_PREFIX, DICOM_PREFIX))]


def truth_columns(columns: Iterable[str]) -> list[str]:
    """The ground-truth columns (``truth_*``) among ``columns``, in order.

    Parameters
    ----------
    columns : iterable of str
        Column names, e.g. a simulated cases table's.

    Returns
    -------
    list of str

    Examples
    --------
    >>> truth_columns(["case_id", "truth_radius_mm", "age", "truth_volume_mm3"])
    ['truth_radius_mm', 'truth_volume_mm3']
    """
    return [c for c in columns if str(c).startswith(TRUTH_PREFIX)]


def wide_features(features: pd.DataFrame, index: Sequence[str] = (CASE_ID, VARIANT_ID, REPEAT)) -> pd.DataFrame:
    """Pivot the long features table to one row per (case, variant, repeat) and one column per feature.

    The wide table is what scikit-learn estimators such as :class:`harmony.ComBat` take: for a table of
    one variant and repeat, ``wide_features(features, index=["case_id"]).set_index("case_id")`` is ``X``.

    Parameters
    ----------
    features : DataFrame
        A long features table (:data:`FEATURES`): ``feature`` and ``value`` plus the ``index`` columns.
    index : sequence of str, default ("case_id", "variant_id", "repeat")
        Columns that identify a row of the wide table. Every combination of their values is a row (all NaN
        where the long table has none, e.g. a failed task), so give columns that vary independently; take
        per-case columns such as the site from the cases table. Where several rows share an index and a
        feature, the first value is kept.

    Returns
    -------
    DataFrame
        The ``index`` columns, then one float column per feature (in order of first appearance); a
        missing value is NaN.

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"case_id": ["a", "a"], "site": ["s", "s"], "variant_id": ["original"] * 2,
    ...                      "repeat": [0, 0], "feature": ["f1", "f2"], "value": [1.0, 2.0]})
    >>> wide_features(long).to_dict("records")
    [{'case_id': 'a', 'variant_id': 'original', 'repeat': 0, 'f1': 1.0, 'f2': 2.0}]
    """
    wide = features.pivot_table(index=list(index), columns=FEATURE, values=VALUE, aggfunc="first", dropna=False,
                                sort=False)
    wide.columns.name = None
    return wide.reset_index()
