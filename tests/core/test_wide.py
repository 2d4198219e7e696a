"""Wide feature tables: which columns are features, the missing-value policies, and writing back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony.core import schema
from harmony.core.errors import HarmonyError
from harmony.core.wide import is_long_table, long_to_wide, read_wide, table_columns, write_wide


def wide_frame(n_per_site: int = 6, sites=("GE", "Siemens", "Philips"), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_per_site * len(sites)
    frame = pd.DataFrame({
        "SubjectID": [f"S{i:03d}" for i in range(n)],
        "Manufacturer": [sites[i % len(sites)] for i in range(n)],
        "age": rng.integers(40, 80, n).astype(float),
        "sex": [("F", "M")[i % 2] for i in range(n)],
        "PatientName": [f"name {i}" for i in range(n)],
        "diagnostics_Mask-original_VoxelNum": rng.integers(100, 900, n),
    })
    for j in range(5):
        frame[f"original_firstorder_F{j}"] = rng.gamma(2.0, 1.0 + j, n)
    return frame


@pytest.fixture
def messy(tmp_path):
    """A wide CSV with what real tables hold: #NAME? cells, a one-subject site and missing ages."""
    frame = wide_frame()
    frame = frame.astype({"original_firstorder_F1": object, "age": object})
    frame.loc[[2, 5], "original_firstorder_F1"] = "#NAME?"
    frame.loc[[1, 4, 7], "age"] = ""
    lonely = frame.iloc[[0]].assign(SubjectID="S999", Manufacturer="Toshiba")
    frame = pd.concat([frame, lonely], ignore_index=True)
    path = tmp_path / "features.csv"
    frame.to_csv(path, index=False)
    return path


def test_columns_that_are_features(messy):
    table = read_wide(messy, id_column="SubjectID", batch="Manufacturer", covariates=["age", "sex"],
                      missing="drop-subjects")
    assert sorted(table.features[schema.FEATURE].unique()) == [f"original_firstorder_F{j}" for j in range(5)]
    assert table.skipped_columns == {"PatientName": "not numbers",
                                     "diagnostics_Mask-original_VoxelNum": "pyradiomics diagnostics"}
    assert table.bad_cells == 2
    assert set(table.cases.columns) == {"case_id", "site", "image", "mask", "age", "sex"}
    assert table.cases["age"].dtype == np.float64 and pd.api.types.is_string_dtype(table.cases["sex"])


def test_stop_names_every_kind_of_hole(messy):
    with pytest.raises(HarmonyError) as err:
        read_wide(messy, id_column="SubjectID", batch="Manufacturer", covariates=["age"])
    message = str(err.value)
    assert message.startswith(str(messy))
    assert "3 subject(s) without 'age' (first 'S001')" in message
    assert "column 'original_firstorder_F1', subject 'S002': '#NAME?' is not a number" in message
    assert "--missing drop-subjects" in message and "\n" not in message


def test_drop_subjects_counts_and_names(messy):
    table = read_wide(messy, id_column="SubjectID", batch="Manufacturer", covariates=["age"],
                      missing="drop-subjects")
    assert table.dropped_subjects == {"S001": "without 'age'", "S004": "without 'age'", "S007": "without 'age'",
                                      "S002": "missing feature values", "S005": "missing feature values",
                                      "S999": "in a Manufacturer of fewer than 2 subjects"}
    assert len(table.cases) == 18 + 1 - 6 and table.features[schema.VALUE].notna().all()
    assert table.summary().startswith("13 subjects x 5 features kept; dropped 6 subjects (3 without 'age', 2 missing")


def test_drop_features_keeps_subjects_with_features_missing(messy):
    table = read_wide(messy, id_column="SubjectID", batch="Manufacturer", covariates=["age"],
                      missing="drop-features")
    assert table.dropped_features == {"original_firstorder_F1": "not numbers"}
    assert "S002" in set(table.cases[schema.CASE_ID])  # only its F1 was missing
    assert {"S001", "S999"} <= set(table.dropped_subjects)  # no age; alone in its site


def test_a_one_subject_site_stops_by_default(tmp_path):
    frame = wide_frame()
    frame.loc[0, "Manufacturer"] = "Toshiba"
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(HarmonyError, match=r"Manufacturer 'Toshiba' has 1 subject\(s\), fewer than 2"):
        read_wide(tmp_path / "t.csv", id_column="SubjectID", batch="Manufacturer")


@pytest.mark.parametrize("change, message", [
    ({"id_column": "Subject"}, r"--id column 'Subject' is not in the table"),
    ({"batch": "Vendor"}, r"--batch column 'Vendor' is not in the table"),
    ({"covariates": ["weight"]}, r"--covariates column 'weight' is not in the table"),
    ({"missing": "impute"}, r"--missing must be one of"),
])
def test_named_errors(tmp_path, change, message):
    wide_frame().to_csv(tmp_path / "t.csv", index=False)
    kwargs = {"id_column": "SubjectID", "batch": "Manufacturer"} | change
    with pytest.raises(HarmonyError, match=message):
        read_wide(tmp_path / "t.csv", **kwargs)


def test_repeated_id_and_unknown_suffix(tmp_path):
    frame = wide_frame()
    frame.loc[3, "SubjectID"] = "S000"
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(HarmonyError, match="subject id 'S000' appears more than once"):
        read_wide(tmp_path / "t.csv", id_column="SubjectID", batch="Manufacturer")
    with pytest.raises(HarmonyError, match="cannot tell the table's format"):
        read_wide(tmp_path / "t.xlsx", id_column="SubjectID", batch="Manufacturer")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_round_trip_in_the_input_format(tmp_path, suffix):
    frame = wide_frame().drop(columns=["PatientName", "diagnostics_Mask-original_VoxelNum"])
    path = tmp_path / f"in{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, sep="," if suffix == ".csv" else "\t")
    assert table_columns(path) == list(frame.columns) and not is_long_table(table_columns(path))
    table = read_wide(path, id_column="SubjectID", batch="Manufacturer", covariates=["age", "sex"])
    out = write_wide(table.features, table, tmp_path / f"out{suffix}")
    back = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out, sep="," if suffix == ".csv" else "\t")
    assert list(back.columns) == list(frame.columns)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from(["f1", "f2", "f3"]),
                          st.floats(-1e6, 1e6)), min_size=1, max_size=12, unique_by=lambda t: t[:2]))
def test_long_to_wide_holds_every_value_once(rows):
    long = pd.DataFrame(rows, columns=[schema.CASE_ID, schema.FEATURE, schema.VALUE])
    wide = long_to_wide(long)
    assert int(wide.notna().to_numpy().sum()) == len(long)
    for case_id, feature, value in rows:
        assert wide.at[case_id, feature] == value
