"""The public Python API: lazy ``import harmony``, ``__all__`` in every module, numpydoc on every public name,
the one-call ``apply`` of the perturbation specs, and the README's "Python API" section run as a test."""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

import harmony
from harmony.core.errors import CaseError
from harmony.perturb import ops
from harmony.perturb.variants import Variant, case_rng
from tests.conftest import ROOT, ball_case, sitk_image, voxels

#: What ``import harmony`` must not load: the scientific stack is imported when a name is first used.
HEAVY = ("numpy", "pandas", "SimpleITK", "radiomics", "scipy", "sklearn", "matplotlib", "pyarrow", "pingouin",
         "skimage", "yaml")

#: The names issue "the house" asks ``harmony`` to export, at least.
REQUIRED = ("icc", "ccc", "reliability_table", "feature_verdicts", "ComBat", "Noise", "Resample", "BinWidth",
            "BinCount", "ErodeDilate", "Rotate", "Translate", "Volume", "Contour", "Intensity", "apply",
            "render_phantom", "simulate_cohort", "extract", "run_experiment", "load_experiment", "load_scanner",
            "wide_features", "feature_rows", "simulate_site_features")

MODULES = sorted(m.name for m in pkgutil.walk_packages(harmony.__path__, "harmony.")) + ["harmony"]
PACKAGES = ["harmony"] + sorted(m.name for m in pkgutil.walk_packages(harmony.__path__, "harmony.") if m.ispkg)


# -- import harmony ------------------------------------------------------------------------------------

def test_import_harmony_loads_none_of_the_scientific_stack():
    code = "import json, sys; import harmony; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    # -X importtime lists every module imported, one a line: "import time: self | cumulative | name"
    timed = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    assert "harmony" in loaded and "harmony" in timed  # the probe sees what it should
    assert sorted(loaded & set(HEAVY)) == []
    assert sorted(timed & set(HEAVY)) == []


def test_a_name_imports_its_module_on_first_use():
    code = ("import json, sys; import harmony; before = 'harmony.reliability.agreement' in sys.modules; "
            "harmony.icc; print(json.dumps([before, 'harmony.reliability.agreement' in sys.modules, "
            "'harmony.harmonize.combat' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(done.stdout) == [False, True, False]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves_and_is_listed_by_dir(package):
    module = importlib.import_module(package)
    names = module.__all__
    assert len(names) == len(set(names)), f"{package}.__all__ repeats a name"
    missing = [n for n in names if not hasattr(module, n)]
    assert missing == []
    assert sorted(set(names) - set(dir(module))) == []
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        module.not_a_name  # noqa: B018


def test_harmony_exports_the_curated_set():
    assert sorted(set(REQUIRED) - set(harmony.__all__)) == []
    assert harmony.__version__ and "__version__" in harmony.__all__
    assert len(harmony.__all__) < 60, "keep the top level curated; the stage packages export the rest"


def test_top_level_names_are_exported_by_their_stage_package_too():
    for module, names in _lazy_map("harmony").items():
        stage = "harmony." + module.strip(".").split(".")[0]
        stage_names = importlib.import_module(stage).__all__
        assert sorted(set(names) - set(stage_names)) == [], f"{stage} does not export them"


# -- __all__ in every module ---------------------------------------------------------------------------

def _source(name: str) -> ast.Module:
    return ast.parse(Path(importlib.import_module(name).__file__).read_text(encoding="utf-8"))


def _lazy_map(package: str) -> dict[str, list[str]]:
    """The ``exports`` mapping literal that a package's ``__init__`` hands to ``lazy_exports``."""
    for node in ast.walk(_source(package)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports":
            return ast.literal_eval(node.args[2])
    return {}


def _statements(body: list[ast.stmt]):
    """The module's top-level statements, those inside a top-level ``try`` or ``if`` included."""
    for node in body:
        yield node
        if isinstance(node, (ast.Try, ast.If)):
            for block in (node.body, node.orelse, getattr(node, "finalbody", []),
                          *(h.body for h in getattr(node, "handlers", []))):
                yield from _statements(block)


def _top_level(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(every name the module defines at top level, the public functions and classes among them)."""
    defined, public = set(), set()
    for node in _statements(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
            if not node.name.startswith("_"):
                public.add(node.name)
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name):
                    defined.add(leaf.id)
    return defined, public


@pytest.mark.parametrize("name", MODULES)
def test_module_all_lists_exactly_its_public_names(name):
    module = importlib.import_module(name)
    assert "__all__" in vars(module), f"{name} has no __all__"
    names = list(module.__all__)
    assert len(names) == len(set(names)), f"{name}.__all__ repeats a name"
    assert [n for n in names if not hasattr(module, n)] == []
    if hasattr(module, "__path__"):  # a package: its names are re-exported, each from the module defining it
        for relative, exported in _lazy_map(name).items():
            source = importlib.import_module(relative, name)
            unlisted = sorted(set(exported) - set(getattr(source, "__all__", ())))
            assert unlisted == [], f"{name} exports names that {source.__name__}.__all__ does not list"
        return
    defined, public = _top_level(_source(name))
    assert sorted(set(names) - defined) == [], f"{name}.__all__ lists names it imports"
    assert sorted(public - set(names)) == [], f"{name}: public functions or classes missing from __all__"


# -- numpydoc ------------------------------------------------------------------------------------------

def _sections(doc: str) -> set[str]:
    lines = doc.splitlines()
    return {lines[i].strip() for i in range(len(lines) - 1)
            if lines[i].strip() and set(lines[i + 1].strip()) == {"-"} and len(lines[i + 1].strip()) >= 3}


def _parameters(func) -> list[str]:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    return [p for p in signature.parameters if p not in ("self", "cls")]


def _returns_value(func) -> bool:
    annotation = inspect.signature(func).return_annotation
    return annotation not in (inspect.Signature.empty, None, "None") and not (
        isinstance(annotation, str) and annotation.startswith(("Iterator", "Generator")))


def _numpydoc_problems(where: str, obj) -> list[str]:
    doc = inspect.getdoc(obj)
    if not doc:
        return [f"{where}: no docstring"]
    problems = []
    summary = doc.splitlines()[0]
    if not summary.rstrip().endswith(".") or len(doc.splitlines()) > 1 and doc.splitlines()[1].strip():
        problems.append(f"{where}: the summary is not one line ending with a period")
    sections = _sections(doc)
    if inspect.isclass(obj):
        init = obj.__dict__.get("__init__")
        if (init is not None or "__dataclass_fields__" in obj.__dict__) and _parameters(obj):
            if not sections & {"Parameters", "Attributes"}:
                problems.append(f"{where}: no Parameters section")
        return problems
    if _parameters(obj) and "Parameters" not in sections:
        problems.append(f"{where}: no Parameters section")
    if _returns_value(obj) and not sections & {"Returns", "Yields"}:
        problems.append(f"{where}: no Returns section")
    return problems


def _members(cls) -> list[tuple[str, object]]:
    out = []
    for attr, value in vars(cls).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, property) or type(value).__name__ == "cached_property":
            out.append((attr, value))
        elif isinstance(value, (classmethod, staticmethod)):
            out.append((attr, value.__func__))
        elif inspect.isfunction(value):
            out.append((attr, value))
    return out


@pytest.mark.parametrize("name", [m for m in MODULES if not hasattr(importlib.import_module(m), "__path__")])
def test_public_names_have_numpydoc_docstrings(name):
    """Packages only re-export; each name is documented in the module that defines it."""
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None)
    if names is None:  # test_module_all_lists_exactly_its_public_names fails it; check its public names anyway
        names = sorted(_top_level(_source(name))[1])
    problems = []
    for attr in names:
        obj = getattr(module, attr)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != name:
            continue
        problems += _numpydoc_problems(f"{name}.{attr}", obj)
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for member, value in _members(obj):
                where = f"{name}.{attr}.{member}"
                if inspect.isfunction(value):
                    problems += _numpydoc_problems(where, value)
                elif not inspect.getdoc(value):
                    problems.append(f"{where}: no docstring")
    assert problems == []


def test_the_top_level_functions_have_examples():
    lacking = []
    for name in harmony.__all__:
        obj = getattr(harmony, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or (
                inspect.isclass(obj) and issubclass(obj, BaseException)):
            continue
        doc = inspect.getdoc(obj) or ""
        if "Examples" not in _sections(doc):
            lacking.append(name)
    assert lacking == []


# -- apply: one spec or a chain, images or paths, rng explicit ------------------------------------------

@pytest.fixture(scope="module")
def case():
    return ball_case((12, 30, 30), (0.8, 0.8, 2.0), radius_mm=5.0, seed=3, noise=4.0)


def test_apply_reads_paths_as_it_takes_images(case, tmp_path):
    image, mask = case
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    sitk.WriteImage(mask, str(tmp_path / "gtv.nrrd"))
    spec = harmony.Intensity(scale=2.0, offset=-10.0)
    from_files = harmony.apply(spec, str(tmp_path / "ct.nrrd"), tmp_path / "gtv.nrrd")
    from_images = harmony.apply(spec, image, mask)
    expected = voxels(image).astype(np.float32) * np.float32(2.0) + np.float32(-10.0)
    for out in (from_files, from_images):
        np.testing.assert_array_equal(voxels(out[0]), expected)
        np.testing.assert_array_equal(voxels(out[1]), voxels(mask))
        assert out[0].GetSpacing() == image.GetSpacing() and out[0].GetOrigin() == image.GetOrigin()
    with pytest.raises(CaseError, match=r"image file not found: .*missing\.nrrd"):
        harmony.apply(spec, tmp_path / "missing.nrrd", mask)


def test_a_single_spec_a_one_spec_chain_and_spec_apply_agree(case):
    image, mask = case
    spec = harmony.Noise(level=3.0)
    a = harmony.apply(spec, image, mask, rng=np.random.default_rng(1))
    b = harmony.apply([spec], image, mask, rng=np.random.default_rng(1))
    c = spec.apply(image, mask, rng=np.random.default_rng(1))
    for other in (b, c):
        np.testing.assert_array_equal(voxels(a[0]), voxels(other[0]))
    assert a[1] is mask  # noise leaves the mask as given


def test_a_chain_equals_its_specs_applied_one_after_another(case):
    image, mask = case
    chain = [harmony.Noise(level=2.0), harmony.Resample(spacing_mm=1.5, back_to_original=True),
             harmony.ErodeDilate(distance_mm=-1.0), harmony.Noise(level=1.0)]
    chained = harmony.apply(chain, image, mask, rng=np.random.default_rng(5))
    rng, stepwise = np.random.default_rng(5), (image, mask)
    for spec in chain:
        stepwise = harmony.apply(spec, *stepwise, rng=rng)
    np.testing.assert_array_equal(voxels(chained[0]), voxels(stepwise[0]))
    np.testing.assert_array_equal(voxels(chained[1]), voxels(stepwise[1]))


def test_rng_is_explicit_and_is_the_only_source_of_randomness(case):
    image, mask = case
    with pytest.raises(harmony.HarmonyError, match=r"noise is random: pass rng=numpy\.random\.default_rng"):
        harmony.apply([harmony.ErodeDilate(distance_mm=1.0), harmony.Noise(level=1.0)], image, mask)
    same = [voxels(harmony.apply(harmony.Noise(level=1.0), image, mask, rng=np.random.default_rng(9))[0])
            for _ in range(2)]
    other = voxels(harmony.apply(harmony.Noise(level=1.0), image, mask, rng=np.random.default_rng(10))[0])
    np.testing.assert_array_equal(same[0], same[1])
    assert not np.array_equal(same[0], other)
    # deterministic specs do not draw: the generator's state is untouched
    rng = np.random.default_rng(2)
    state = json.dumps(rng.bit_generator.state)
    harmony.apply([harmony.Intensity(offset=5.0), harmony.Volume(fraction=0.8)], image, mask, rng=rng)
    assert json.dumps(rng.bit_generator.state) == state


def test_apply_replays_a_design_variant_given_its_case_stream(case):
    """A variant draws from case_rng(seed, case_id, repeat): apply with that stream makes the same image."""
    image, mask = case
    spec = harmony.Noise(level=4.0, seed=11)
    replay = harmony.apply(spec, image, mask, rng=case_rng(11, "c7", 2))
    made = Variant((spec,)).apply(image, mask, case_id="c7", repeat=2)
    np.testing.assert_array_equal(voxels(replay[0]), voxels(made[0]))


def test_noise_adds_the_standard_deviation_asked_for():
    flat = sitk_image(np.full((16, 40, 40), 100.0, np.float32))
    roi = np.zeros((16, 40, 40), np.uint8)
    roi[4:12, 10:30, 10:30] = 1
    mask = sitk_image(roi)
    noisy, _ = harmony.apply(harmony.Noise(level=7.0), flat, mask, rng=np.random.default_rng(0))
    added = voxels(noisy).astype(np.float64) - 100.0
    se = 7.0 / np.sqrt(2 * added.size)  # standard error of a sample SD
    assert abs(added.std() - 7.0) < 4 * se and abs(added.mean()) < 4 * 7.0 / np.sqrt(added.size)
    # relative: level 1 doubles the variance of an image whose own noise is white with SD 5
    base = 100.0 + np.random.default_rng(1).normal(0.0, 5.0, roi.shape)
    image = sitk_image(base.astype(np.float32))
    doubled, _ = harmony.apply(harmony.Noise(level=1.0, relative=True), image, mask, rng=np.random.default_rng(2))
    estimate = ops.estimate_noise(base, roi.astype(bool), (1.0, 1.0, 1.0))
    total = voxels(doubled).astype(np.float64) - 100.0
    assert abs(estimate - 5.0) < 0.25
    assert abs(total.std() / np.sqrt(2) - 5.0) < 0.25


def test_translate_by_one_voxel_shifts_image_and_mask_exactly():
    values = np.random.default_rng(4).normal(100.0, 20.0, (6, 12, 14)).astype(np.float32)
    roi = np.zeros(values.shape, np.uint8)
    roi[2:4, 4:8, 5:9] = 1
    image, mask = sitk_image(values, spacing=(0.7, 0.9, 2.0)), sitk_image(roi, spacing=(0.7, 0.9, 2.0))
    moved, moved_mask = harmony.apply(harmony.Translate(fraction=(1.0, 0.0, 0.0), margin_mm=100.0), image, mask)
    expected = values.copy()
    expected[:, :, 1:] = values[:, :, :-1]  # the content moves one voxel along +x; the border repeats
    np.testing.assert_allclose(voxels(moved), expected, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(voxels(moved_mask), np.roll(roi, 1, axis=2))


def test_the_roi_is_the_label_and_the_result_holds_only_it():
    values = np.random.default_rng(5).normal(50.0, 5.0, (8, 16, 16)).astype(np.float32)
    labels = np.zeros(values.shape, np.uint8)
    labels[2:6, 2:7, 2:7] = 1
    labels[3:5, 9:13, 9:13] = 2
    image, mask = sitk_image(values), sitk_image(labels)
    _, grown = harmony.apply(harmony.ErodeDilate(distance_mm=1.0), image, mask, label=2)
    cross = ndimage.generate_binary_structure(3, 1)  # within 1 mm on a 1 mm grid: the 6 face neighbours
    expected = ndimage.binary_dilation(labels == 2, structure=cross)
    assert set(np.unique(voxels(grown))) == {0, 2}
    np.testing.assert_array_equal(voxels(grown) == 2, expected)
    with pytest.raises(harmony.HarmonyError, match="the mask has no voxel with label 3"):
        harmony.apply(harmony.ErodeDilate(distance_mm=1.0), image, mask, label=3)


def test_inputs_are_left_as_they_were_and_settings_specs_change_no_voxel(case):
    image, mask = case
    before = voxels(image).copy(), voxels(mask).copy()
    harmony.apply([harmony.Noise(level=5.0), harmony.Rotate(angle_deg=20.0, axis="z"),
                   harmony.Contour(supervoxel_mm3=20.0)], image, mask, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(voxels(image), before[0])
    np.testing.assert_array_equal(voxels(mask), before[1])
    same_image, same_mask = harmony.apply([harmony.BinWidth(width=10.0), harmony.BinCount(count=16)], image, mask)
    assert same_image is image and same_mask is mask
    with pytest.raises(harmony.HarmonyError, match=r"specs must be perturbation specs .* got \{'kind': 'noise'\}"):
        harmony.apply([{"kind": "noise"}], image, mask)


# -- the README's "Python API" section, run in order --------------------------------------------------

README = ROOT / "README.md"
SAMPLE_CASES = ROOT / "tests" / "data" / "pyradiomics_cases"


def _python_api_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Python API\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], re.S)


def _expected_output(block: str) -> list[str] | None:
    """The comment lines that end a block, without their "# ": the output its prints show."""
    lines = block.rstrip("\n").splitlines()
    tail = []
    while lines and lines[-1].startswith("#"):
        tail.insert(0, lines.pop()[2:].rstrip())
    return tail or None


@pytest.mark.slow
def test_the_readme_python_api_section_runs_and_prints_what_it_shows(monkeypatch):
    for name in ("brain1", "breast1", "lung1"):  # vendored with the repository, so never a reason to skip
        assert (SAMPLE_CASES / f"{name}_image.nrrd").is_file(), f"{SAMPLE_CASES} lacks {name}"
    blocks = _python_api_blocks()
    assert len(blocks) >= 5
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(blocks):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block, f"README.md, Python API block {i + 1}", "exec"), namespace)  # noqa: S102
        expected = _expected_output(block)
        if expected is not None:
            assert [line.rstrip() for line in printed.getvalue().splitlines()] == expected, f"block {i + 1}"
    # the worked example's steps did what the text says
    icc = namespace["icc"]
    assert set(icc["metric"]) == {"ICC(1,1)", "ICC(A,1)", "ICC(C,1)", "ICC(1,k)", "ICC(A,k)", "ICC(C,k)"}
    assert set(namespace["features"]["case_id"]) == {"brain1", "breast1", "lung1"}


def test_no_harmony_import_inside_a_function_outside_the_cli():
    """An import inside a function hides an edge of the import graph from lint-imports; only the CLI (which
    imports each command's module when it runs, so `harmony --help` starts fast) may do it."""
    package = Path(harmony.__file__).parent
    hidden = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "cli.py" and path.parent == package:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(function):
                module = (node.module or "") if isinstance(node, ast.ImportFrom) else None
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if (module is not None and (node.level or module.split(".")[0] == "harmony")) or \
                        any(n.split(".")[0] == "harmony" for n in names):
                    hidden.append(f"{path.relative_to(package.parent)}:{node.lineno}")
    assert hidden == []
