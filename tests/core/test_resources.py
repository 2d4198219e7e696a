"""The built-in examples: names, resolution, descriptions, copying, and that the repository's experiments/ and
phantoms/ folders are their only copy (harmony/examples links to them, the wheel ships them)."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from harmony.core import resources
from harmony.core.errors import ConfigError
from harmony.core.resources import (
    DESCRIPTION_WIDTH,
    KINDS,
    TOPS,
    builtin_names,
    builtin_path,
    catalog,
    copy_examples,
    describe,
    examples_dir,
    is_bare_name,
    resolve,
)
from harmony.workflows.experiment import load_experiment
from tests.conftest import ROOT

SKIP_DIRS = {"__pycache__", "build", "dist", "reports", "node_modules"}


def repo_example_files() -> list[Path]:
    """Every file of the repository's experiments/ and phantoms/, relative to the checkout."""
    return sorted(p.relative_to(ROOT) for top in TOPS for p in (ROOT / top).rglob("*") if p.is_file())


def test_names_are_the_files_of_the_repository_folders():
    for kind, (folders, suffix) in KINDS.items():
        expected = sorted(p.stem for folder in folders for p in (ROOT / folder).glob(f"*{suffix}"))
        assert builtin_names(kind) == expected, kind
        assert len(set(expected)) == len(expected), f"{kind}: a name in two folders"
        for name in expected:
            path = builtin_path(kind, name)
            assert path.read_bytes() == (ROOT / path.relative_to(examples_dir())).read_bytes()


def test_every_shipped_file_has_exactly_one_kind():
    owners = {}
    for kind in KINDS:
        for name in builtin_names(kind):
            rel = builtin_path(kind, name).relative_to(examples_dir())
            assert rel not in owners, f"{rel} is both a {owners[rel]} and a {kind}"
            owners[rel] = kind
    assert sorted(owners) == repo_example_files()


def _glob_matches(path: str, pattern: str) -> bool:
    """setuptools' package-data semantics: ``*`` stays inside one folder."""
    parts, globs = PurePosixPath(path).parts, PurePosixPath(pattern).parts
    return len(parts) == len(globs) and all(fnmatch.fnmatchcase(p, g) for p, g in zip(parts, globs))


def test_package_data_globs_ship_every_example_file():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["harmony"]
    missing = [str(rel) for rel in repo_example_files()
               if not any(_glob_matches(f"examples/{rel.as_posix()}", g) for g in globs)]
    assert missing == [], f"not shipped in the wheel: {missing}"


def test_examples_folder_is_two_relative_links_to_the_top_level_folders():
    folder = ROOT / "harmony" / "examples"
    assert sorted(os.listdir(folder)) == sorted(TOPS)
    for top in TOPS:
        link = folder / top
        assert link.is_symlink(), f"{link} must link to ../../{top}, not hold a copy"
        assert os.readlink(link) == f"../../{top}"
        assert link.resolve() == (ROOT / top).resolve()
    assert examples_dir().resolve() == folder.resolve()


def test_no_example_file_is_duplicated_in_the_tree():
    by_hash: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(ROOT):  # links are not followed: harmony/examples is skipped
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS
                       and not d.endswith(".egg-info")]
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink() and path.stat().st_size < 5_000_000:
                by_hash.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(path.relative_to(ROOT))
    for rel in repo_example_files():
        copies = by_hash[hashlib.sha256((ROOT / rel).read_bytes()).hexdigest()]
        assert copies == [rel], f"{rel} has copies at {[str(c) for c in copies if c != rel]}"


@pytest.mark.parametrize("ref, bare", [
    ("quickstart", True), ("ct_sharp_1mm", True), ("quickstart.toml", False), ("./quickstart", False),
    ("experiments/quickstart", False), ("a\\b", False), ("", False), (Path("cohort_demo"), True),
])
def test_is_bare_name(ref, bare):
    assert is_bare_name(ref) is bare


def test_resolve_prefers_an_existing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve("quickstart", "experiment") == builtin_path("experiment", "quickstart")
    Path("quickstart").write_text("[experiment]\n")
    assert resolve("quickstart", "experiment") == Path("quickstart")
    assert load_experiment("quickstart")["experiment"]["name"] == "experiment"  # the user's file, not the example


def test_resolve_a_folder_named_like_a_builtin_does_not_shadow_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("quickstart").mkdir()  # e.g. from `harmony run quickstart --out quickstart`
    assert resolve("quickstart", "experiment") == builtin_path("experiment", "quickstart")
    assert load_experiment("quickstart")["experiment"]["name"] == "quickstart"
    Path("mine").mkdir()
    assert resolve("mine", "experiment") == Path("mine")  # not a built-in either: the reader says "a directory"
    with pytest.raises(ConfigError, match="mine: is a directory"):
        load_experiment("mine")


def test_resolve_returns_paths_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for ref in ("missing.toml", "sub/quickstart", "./ct_sharp_1mm"):
        assert resolve(ref, "scanner") == Path(ref)


@pytest.mark.parametrize("kind", list(KINDS))
def test_unknown_name_lists_the_known_ones(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        resolve("no_such_example", kind)
    message = str(info.value)
    assert "\n" not in message and "'no_such_example'" in message and kind in message
    for name in builtin_names(kind):
        assert name in message


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="kind must be one of"):
        builtin_names("scanners")


def test_catalog_describes_every_example_on_one_line():
    found = catalog()
    assert list(found) == list(KINDS)
    for kind, examples in found.items():
        assert list(examples) == builtin_names(kind)
        for name, text in examples.items():
            assert text and "\n" not in text and len(text) <= DESCRIPTION_WIDTH, (kind, name, text)
    assert found["scanner"]["mr_bias_field"] == tomllib.loads(
        (ROOT / "phantoms/scanners/mr_bias_field.toml").read_text())["description"]


def test_describe_prefers_the_description_key(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('# The comment. More.\ndescription = "The key."\n')
    assert describe(path) == "The key."
    path.write_text('# The comment.\n[experiment]\ndescription = """An experiment, \\\n  on two lines."""\n')
    assert describe(path) == "An experiment, on two lines."


def test_describe_falls_back_to_the_first_sentence_of_the_leading_comment(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("# Settings for\n#   phantoms (bin width 10). Second sentence.\n#\n# Later paragraph.\n"
                    "setting: {}\n")
    assert describe(path) == "Settings for phantoms (bin width 10)."
    path.write_text("setting: {}\n# not leading\n")
    assert describe(path) == ""


def test_describe_cuts_long_text_at_a_word(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text(f'description = "{"word " * 40}"\n')
    text = describe(path)
    assert len(text) <= DESCRIPTION_WIDTH and text.endswith("word...")


def test_copy_examples_copies_every_file_byte_identically(tmp_path):
    dest = tmp_path / "new" / "examples"
    written = copy_examples(dest)
    assert written == [dest / rel for rel in repo_example_files()]
    copied = sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file())
    assert copied == repo_example_files()
    for rel in copied:
        assert (dest / rel).read_bytes() == (ROOT / rel).read_bytes()
        assert not (dest / rel).is_symlink()


def test_copy_examples_refuses_to_overwrite_and_writes_nothing(tmp_path):
    mine = tmp_path / "phantoms" / "scanners" / "ct_sharp_1mm.toml"
    mine.parent.mkdir(parents=True)
    mine.write_text("my edits")
    (tmp_path / "notes.txt").write_text("unrelated")
    with pytest.raises(ConfigError, match=f"{mine}: already exists"):
        copy_examples(tmp_path)
    assert mine.read_text() == "my edits"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()) == [
        Path("notes.txt"), Path("phantoms/scanners/ct_sharp_1mm.toml")]


def test_copy_examples_into_a_file_or_an_unwritable_place(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        copy_examples(target)
    with pytest.raises(ConfigError, match="cannot copy the examples there"):
        copy_examples(target / "below")  # a folder below a file cannot be made


def test_copy_into_a_folder_with_other_files_is_fine(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "mine.toml").write_text("[experiment]\n")
    assert len(copy_examples(tmp_path)) == len(repo_example_files())


def test_copied_experiments_validate_from_the_copy(tmp_path, monkeypatch):
    dest = tmp_path / "copy"
    copy_examples(dest)
    monkeypatch.chdir(tmp_path)  # neither the checkout nor the copy
    for name in builtin_names("experiment"):
        config = load_experiment(dest / "experiments" / f"{name}.toml")
        assert Path(config["_source"]) == (dest / "experiments" / f"{name}.toml").resolve()
        for section, key in (("cases", "csv"), ("extraction", "params")):
            if config[section][key]:
                assert Path(config[section][key]).is_relative_to(dest.resolve()), (name, section, key)
    quickstart = load_experiment(dest / "experiments" / "quickstart.toml")
    assert quickstart["extraction"]["params"] == str((dest / "phantoms" / "cohort_params.yaml").resolve())
    builtin = load_experiment("quickstart")
    assert builtin["extraction"]["params"] == str(builtin_path("params", "cohort_params").resolve())
    for config in (quickstart, builtin):  # the copy is the example, but its paths point into the copy
        del config["_source"], config["extraction"]["params"]
    assert quickstart == builtin


def test_module_reads_the_installed_package_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert examples_dir().is_absolute()
    assert Path(resources.__file__).resolve().parents[1] == examples_dir().resolve().parent
