"""Table contracts, atomic writes, hashes and manifests."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.core import schema
from harmony.core.errors import SchemaError
from harmony.core.files import atomic_write, read_table, stable_hash, write_table
from harmony.core.manifest import build_manifest, now_utc, write_manifest
from tests.conftest import features_table


def features(n=3):
    return features_table({(f"c{i}", "original_firstorder_Mean"): float(i) for i in range(n)}, site="A")


def test_round_trip_keeps_dtypes(tmp_path):
    write_table(features(), tmp_path / "f.parquet", schema.FEATURES)
    back = read_table(tmp_path / "f.parquet", schema.FEATURES)
    pd.testing.assert_frame_equal(back, schema.FEATURES.validate(features()))
    assert back["repeat"].dtype == "int64" and back["value"].dtype == "float64"


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda df: df.drop(columns="site"), "missing column(s) ['site']"),
        (lambda df: df.assign(extra=1), "unexpected column(s) ['extra']"),
        (lambda df: df.assign(repeat=[0, 1.5, 2]), "column 'repeat': expected an integer, got 1.5"),
        (lambda df: df.assign(value=["1", "x", "3"]), "column 'value': expected a number, got 'x'"),
        (lambda df: df.assign(case_id=["a", None, "c"]), "column 'case_id': missing value in row 1"),
        (lambda df: df.assign(case_id=["a", 3, "c"]), "column 'case_id': expected text, got 3"),
        (lambda df: df.assign(case_id="same"), "duplicated key"),
    ],
)
def test_validation_names_table_column_and_value(mutate, fragment):
    with pytest.raises(SchemaError) as err:
        schema.FEATURES.validate(mutate(features()), source="run/features.parquet")
    assert str(err.value).startswith("run/features.parquet: features table")
    assert fragment in str(err.value)


def test_reliability_metric_must_be_known():
    row = {"feature": "f", "perturbation": "noise", "metric": "ICC(2,1)", "estimate": 0.5, "ci_low": 0.4,
           "ci_high": 0.6, "n_cases": 10, "n_variants": 3, "category": "moderate", "stable": False}
    with pytest.raises(SchemaError, match=r"'ICC\(2,1\)' is not one of"):
        schema.RELIABILITY.validate(pd.DataFrame([row]))
    schema.RELIABILITY.validate(pd.DataFrame([dict(row, metric="ICC(A,1)")]))


def test_empty_tables_validate():
    for spec in schema.TABLES.values():
        assert list(spec.validate(spec.empty()).columns) == spec.names


def test_unreadable_table_names_the_file(tmp_path):
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(SchemaError, match="bad.parquet: cannot read the features table"):
        read_table(tmp_path / "bad.parquet", schema.FEATURES)
    with pytest.raises(SchemaError, match="none.parquet: features table not found"):
        read_table(tmp_path / "none.parquet", schema.FEATURES)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")

    def crash(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, crash)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_atomic_write_gives_the_permissions_open_would(tmp_path):
    import stat

    atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("x"))
    (tmp_path / "b.txt").write_text("x")
    modes = [stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("a.txt", "b.txt")]
    assert modes[0] == modes[1]


@settings(deadline=None, max_examples=30)
@given(st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5), st.booleans()),
                       max_size=5))
def test_stable_hash_ignores_key_order(obj):
    assert stable_hash(obj) == stable_hash(dict(reversed(list(obj.items()))))


def test_stable_hash_is_the_same_in_another_process():
    obj = {"kind": "noise", "sigma": 2.5, "seed": 7}
    code = "from harmony.core.files import stable_hash; print(stable_hash({'seed': 7, 'sigma': 2.5, 'kind': 'noise'}))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123"}).stdout.strip()
    assert other == stable_hash(obj)


def test_manifest_records_versions_and_config_hash(tmp_path):
    started = now_utc()
    m = build_manifest(command="x", config={"a": 1, "b": float("nan")}, seeds={"experiment": 3},
                       started=started, tasks={"total": 2})
    assert m["versions"]["pyradiomics_distribution"] == "pyradiomics-bhklab"
    assert m["config"] == {"a": 1, "b": None}  # NaN is not JSON
    assert m["config_hash"] == build_manifest(command="y", config={"b": float("nan"), "a": 1},
                                              started=started)["config_hash"]
    path = write_manifest(tmp_path, m)
    assert path.name == "manifest.json" and '"seeds"' in path.read_text()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_read_table_loads_and_checks_only_the_columns_asked_for(tmp_path, suffix):
    path = tmp_path / f"f{suffix}"
    table = features().assign(site=None)  # a column the reader does not ask for may be anything
    if suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    back = read_table(path, schema.FEATURES, columns=[schema.CASE_ID, schema.FEATURE, schema.VALUE])
    assert list(back.columns) == [schema.CASE_ID, schema.FEATURE, schema.VALUE]
    with pytest.raises(SchemaError, match="missing value in row 0"):
        read_table(path, schema.FEATURES)
    table.drop(columns=schema.VALUE).to_parquet(tmp_path / "g.parquet", index=False)
    with pytest.raises(SchemaError, match=r"g.parquet: features table is missing column\(s\) \['value'\]"):
        read_table(tmp_path / "g.parquet", schema.FEATURES, columns=[schema.FEATURE, schema.VALUE])
    with pytest.raises(ValueError, match="no column"):
        schema.FEATURES.subset(["nope"])


def test_pyradiomics_distribution_is_the_one_a_scan_of_every_distribution_finds():
    from importlib import metadata

    from harmony.core.manifest import _provides_radiomics, _radiomics_distribution

    scanned = metadata.packages_distributions()["radiomics"]
    name, version = _radiomics_distribution()
    assert name in scanned and version == metadata.version(name)
    assert not _provides_radiomics(metadata.distribution("numpy"))
