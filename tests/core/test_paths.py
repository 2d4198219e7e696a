"""Output folders and names from data: the checks every command's paths go through."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harmony.core.files import (
    PathError,
    atomic_write,
    check_output_dir,
    ensure_output_dir,
    path_component,
    remove_temp_files,
    write_text,
)


def test_output_folder_checks(tmp_path):
    a_file = write_text(tmp_path / "f.txt", "x")
    with pytest.raises(PathError, match="is an existing file"):
        check_output_dir(a_file)
    with pytest.raises(PathError, match="lies under the file"):
        check_output_dir(a_file / "a" / "b")
    with pytest.raises(PathError, match="longer than the file system allows"):
        check_output_dir(tmp_path / ("x" * 256) / "out")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    with pytest.raises(PathError, match="broken symbolic link"):
        check_output_dir(tmp_path / "dangling" / "out")
    assert not (tmp_path / "new").exists() and check_output_dir(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert ensure_output_dir(tmp_path / "new" / "deep").is_dir()


def test_atomic_write_into_a_path_that_cannot_be_a_folder_is_a_path_error(tmp_path):
    a_file = write_text(tmp_path / "f.txt", "x")
    with pytest.raises(PathError, match=r"f.txt/manifest.json: cannot write it"):
        atomic_write(a_file / "manifest.json", lambda tmp: tmp.write_text("{}"))


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "/abs", "a\\b", "nul\x00", "tab\there",
                                  "x" * 250])
def test_names_that_could_leave_the_folder_are_refused(name):
    with pytest.raises(PathError, match="case_id"):
        path_component(name, "case_id", suffix="_image.nrrd")


@given(st.text(min_size=1, max_size=60))
def test_an_accepted_name_is_one_component_inside_the_folder(name):
    try:
        accepted = path_component(name)
    except PathError:
        return
    assert accepted == name
    base = "/base/out"
    joined = os.path.normpath(os.path.join(base, accepted + "_mask.nrrd"))
    assert os.path.dirname(joined) == base


def test_only_atomic_write_temp_files_are_removed(tmp_path):
    ours = tmp_path / "a" / "b" / ".features.parquet.x1y2z3_4.tmp"
    theirs = [tmp_path / "user.tmp", tmp_path / ".notes.tmp", tmp_path / "a" / ".x.TOOLONGNAME.tmp"]
    too_deep = tmp_path / "1" / "2" / "3" / "4" / ".m.json.abcdefgh.tmp"
    for path in [ours, *theirs, too_deep]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert remove_temp_files(tmp_path) == [ours]
    assert all(p.exists() for p in [*theirs, too_deep])
