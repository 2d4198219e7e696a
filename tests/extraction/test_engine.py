"""The extraction engine: work sharing equal to pyradiomics, executors, resume, failures, the lock."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.config import validate
from harmony.core.errors import ConfigError
from harmony.core.lock import LOCK_NAME
from harmony.extraction.adapter import extract, make_extractor
from harmony.extraction.engine import run_tasks
from harmony.extraction.params import merge_params
from harmony.extraction.shared import (
    SharedExtraction,
    _crop,
    _wavelet_crops,
    extraction_parts,
)
from harmony.extraction.taskfiles import FAILURES_NAME, FEATURES_NAME, TASKS_DIR
from harmony.extraction.tasks import plan
from harmony.perturb.design import expand_design
from harmony.workflows.experiment import experiment_schema
from tests.conftest import ENGINE_PARAMS, blob, sorted_features


def assert_same_features(expected: dict[str, float], got: dict[str, float], rtol: float = 1e-9) -> None:
    assert list(got) == list(expected)  # same keys, in execute's order
    a, b = np.array(list(expected.values())), np.array([got[k] for k in expected])
    np.testing.assert_allclose(b, a, rtol=rtol, atol=0, equal_nan=True)


# -- work sharing equals plain execute --------------------------------------------------------------------

def _masks(mask: sitk.Image) -> list[sitk.Image]:
    return [sitk.BinaryErode(mask, [1, 1, 0]), mask, sitk.BinaryDilate(mask, [1, 1, 1])]


SETTINGS_VARIANTS = [
    {},
    {"setting": {"binWidth": 4}},
    {"setting": {"binCount": 16}},
    {"setting": {"distances": [1, 2]}},
    {"setting": {"normalize": True, "normalizeScale": 100}},
    {"setting": {"resegmentRange": [60, 1000]}},
    {"setting": {"resegmentRange": [60, 1000], "resegmentShape": True}},
    {"imageType": {"Original": {}, "LoG": {"sigma": [2.0, 1.0]}, "Square": {}}},
    # not shareable (loadImage resamples or crops with the mask): must fall back to plain execute
    {"setting": {"resampledPixelSpacing": [1.5, 1.5, 1.5]}},
    {"setting": {"preCrop": True}},
]


@pytest.mark.slow
def test_shared_extraction_equals_plain_execute():
    image, mask = blob(0)
    masks = _masks(mask)[::2]  # eroded and dilated
    pairs = [(m, merge_params(ENGINE_PARAMS, s)) for m in masks for s in SETTINGS_VARIANTS]
    shared = SharedExtraction(image, [m for m, _ in pairs], [p for _, p in pairs], label=1)
    assert shared.shared.count(False) == 2 * len(masks)
    for (m, p), got in zip(pairs, shared.run()):
        assert not isinstance(got, Exception), got
        assert_same_features(extract(image, m, make_extractor(p), label=1).features, got)


def test_shared_extraction_isolates_failing_variants():
    image, mask = blob(1)
    empty = sitk.Image(mask)
    empty *= 0
    single = sitk.Image(empty)
    single[8, 9, 5] = 1
    results = SharedExtraction(image, [empty, mask, single], [ENGINE_PARAMS] * 3).run()
    assert isinstance(results[0], ValueError) and "No labels found" in str(results[0])
    assert isinstance(results[2], ValueError) and "1 segmented voxel" in str(results[2])
    assert_same_features(extract(image, mask, ENGINE_PARAMS).features, results[1])


def test_parts_computed_separately_add_up_to_one_extraction():
    image, mask = blob(2)
    masks, params = _masks(mask), [ENGINE_PARAMS, merge_params(ENGINE_PARAMS, {"setting": {"binWidth": 4}})] * 2
    masks = masks + masks[:1]
    whole = SharedExtraction(image, masks, params).run()
    parts = extraction_parts(params)
    assert parts == [("Original", None), ("LoG", 1.0), ("LoG", 2.0), ("Wavelet", None)]
    pieces = [SharedExtraction(image, masks, params).run(parts=[part], shape=i == 0) for i, part in enumerate(parts)]
    for v, expected in enumerate(whole):
        merged = {}
        for piece in pieces:
            merged.update(piece[v])
        assert merged == expected


@pytest.mark.parametrize("kwargs", [{}, {"level": 2}, {"start_level": 1}, {"wavelet": "haar"}, {"wavelet": "db4"},
                                    {"force2D": True, "force2Ddimension": 0}])
@pytest.mark.parametrize(("shape", "box", "cut"), [
    ((9, 12, 11), ([2, 3, 1], [8, 9, 6]), False),  # margins reach the borders: the whole image, wrap-padded
    ((41, 30, 60), ([20, 10, 15], [24, 12, 20]), True),  # (shape is z, y, x; box is x, y, z)
    ((33, 34, 35), ([17, 0, 16], [17, 5, 16]), False),  # touches the y border
])
def test_wavelet_crops_are_pyradiomics_wavelet_images_cropped(kwargs, shape, box, cut, monkeypatch):
    import pywt
    from radiomics import imageoperations

    image = sitk.GetImageFromArray(np.random.default_rng(3).normal(0, 100, size=shape).astype(np.float32))
    image.SetSpacing((0.7, 0.8, 2.0))
    box = (np.array(box[0]), np.array(box[1]))
    expected = [(_crop(im, box), name) for im, name, _ in imageoperations.getWaveletImage(image, None, **kwargs)]
    sizes, swtn = [], pywt.swtn
    monkeypatch.setattr(pywt, "swtn", lambda data, *a, **kw: sizes.append(data.shape) or swtn(data, *a, **kw))
    got = _wavelet_crops(image, box, **kwargs)
    if cut and not kwargs:  # the transform ran on the box grown by its margin only
        assert all(n < s for n, s in zip(sizes[0], shape))
    if not cut:
        assert sizes[0][1] == shape[1] + shape[1] % 2
    assert [n for _, n in got] == [n for _, n in expected]
    for (a, _), (b, _) in zip(expected, got):
        assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
        assert (a.GetOrigin(), a.GetSpacing(), a.GetPixelID()) == (b.GetOrigin(), b.GetSpacing(), b.GetPixelID())


@pytest.mark.slow
def test_shared_extraction_equals_execute_on_a_real_case(pyradiomics_cases):
    """breast1 (MR, 45x120x21) with LoG and wavelet: eroded, drawn and dilated masks x two bin widths."""
    image = sitk.ReadImage(str(pyradiomics_cases / "breast1_image.nrrd"))
    mask = sitk.ReadImage(str(pyradiomics_cases / "breast1_label.nrrd"))
    params = {"setting": {"binWidth": 25, "label": 1},
              "imageType": {"Original": {}, "LoG": {"sigma": [2.0]}, "Wavelet": {}}}
    pairs = [(m, merge_params(params, {"setting": {"binWidth": w}})) for m in _masks(mask) for w in (25, 50)]
    results = SharedExtraction(image, [m for m, _ in pairs], [p for _, p in pairs]).run()
    for (m, p), got in zip(pairs, results):
        assert_same_features(extract(image, m, p).features, got)


# -- the engine -------------------------------------------------------------------------------------------

def test_engine_equals_apply_then_execute(engine_cohort, engine_variants, engine_serial_run):
    assert (engine_serial_run.total, engine_serial_run.done, engine_serial_run.failed) == (24, 24, 0)
    assert len(engine_variants) == 12 and len({v.image_key for v in engine_variants}) == 2
    got = {key: dict(zip(rows[schema.FEATURE], rows[schema.VALUE]))
           for key, rows in engine_serial_run.features.groupby([schema.CASE_ID, schema.VARIANT_ID], sort=False)}
    for case in engine_cohort.to_dict("records"):
        image, mask = sitk.ReadImage(case[schema.IMAGE]), sitk.ReadImage(case[schema.MASK])
        for v in engine_variants:
            variant_case = v.apply(image, mask, case_id=case[schema.CASE_ID])
            expected = extract(*variant_case, v.apply_settings(ENGINE_PARAMS)).features
            assert_same_features(expected, got[(case[schema.CASE_ID], v.variant_id)])


def test_run_directory_holds_tables_manifest_and_one_file_per_task(engine_cohort, engine_serial_run):
    out = engine_serial_run.out_dir
    assert len(list((out / TASKS_DIR).glob("*/*.parquet"))) == engine_serial_run.total
    assert not (out / LOCK_NAME).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tasks"] == {"total": 24, "done": 24, "failed": 0, "resumed": 0}
    assert set(manifest["seeds"]["variants"]) == {v for v, p in manifest["config"]["variants"].items() if "noise" in p}
    assert manifest["resolved_settings"]["setting"]["binWidth"] == 10
    assert "padDistance" in manifest["resolved_settings"]["setting"]  # pyradiomics' default, filled in
    assert len(manifest["settings_hash"]) == 64
    # per case, execute's own diagnostics of the original image and mask (additionalInfo is on by default)
    for case in engine_cohort.to_dict("records"):
        reference = extract(case[schema.IMAGE], case[schema.MASK], ENGINE_PARAMS).diagnostics
        assert manifest["diagnostics"][case[schema.CASE_ID]] == {
            k: v for k, v in reference.items() if "_Image-original_" in k or "_Mask-original_" in k}
    assert pq.ParquetFile(out / FEATURES_NAME).metadata.num_rows == len(engine_serial_run.features)


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "threads", "expected_threads"),
                         [(2, 0, max(1, (os.cpu_count() or 1) // 2)), (1, 1, 1)])
def test_processes_give_bit_identical_results(engine_cohort, engine_variants, engine_serial_run, tmp_path, workers,
                                              threads, expected_threads):
    """Whatever the workers and their threads (the serial run's SimpleITK uses all cores)."""
    run = run_tasks(engine_cohort, engine_variants, ENGINE_PARAMS, tmp_path, executor="processes", workers=workers,
                    progress=False, threads_per_worker=threads)
    assert run.diagnostics["threads_per_worker"] == expected_threads
    assert engine_serial_run.diagnostics["threads_per_worker"] is None
    pd.testing.assert_frame_equal(sorted_features(run.features), sorted_features(engine_serial_run.features),
                                  check_exact=True)


@pytest.mark.slow
def test_processes_splitting_groups_by_image_type_give_bit_identical_results(engine_cohort, engine_variants,
                                                                             engine_serial_run, tmp_path):
    """One case, so 2 groups for 2 workers: each group is split into its filter parts."""
    one = engine_cohort.iloc[:1]
    run = run_tasks(one, engine_variants, ENGINE_PARAMS, tmp_path, executor="processes", workers=2, progress=False)
    assert run.diagnostics["units"] == 2 * len(extraction_parts([ENGINE_PARAMS]))
    expected = engine_serial_run.features[engine_serial_run.features[schema.CASE_ID] == "a"]
    pd.testing.assert_frame_equal(sorted_features(run.features), sorted_features(expected), check_exact=True)


@pytest.mark.slow
def test_dask_local_cluster_gives_bit_identical_results(engine_cohort, engine_variants, engine_serial_run, tmp_path):
    run = run_tasks(engine_cohort, engine_variants[:4], ENGINE_PARAMS, tmp_path, executor="dask", workers=2,
                    progress=False)
    ids = {v.variant_id for v in engine_variants[:4]}
    expected = engine_serial_run.features[engine_serial_run.features[schema.VARIANT_ID].isin(ids)]
    pd.testing.assert_frame_equal(sorted_features(run.features), sorted_features(expected), check_exact=True)


def test_resume_runs_only_missing_tasks(engine_cohort, engine_variants, engine_serial_run, tmp_path):
    shutil.copytree(engine_serial_run.out_dir / TASKS_DIR, tmp_path / TASKS_DIR)
    removed = sorted((tmp_path / TASKS_DIR).glob("*/*.parquet"))[:3]
    for path in removed:
        path.unlink()
    (removed[0].parent / ".half-written.parquet.tmp").write_bytes(b"PAR1")  # a killed atomic write
    run = run_tasks(engine_cohort, engine_variants, ENGINE_PARAMS, tmp_path, executor="serial", progress=False)
    assert (run.total, run.resumed, run.done) == (24, 21, 24)
    assert all(p.exists() for p in removed)
    assert not list((tmp_path / TASKS_DIR).glob("*/.*.tmp"))
    pd.testing.assert_frame_equal(sorted_features(run.features), sorted_features(engine_serial_run.features),
                                  check_exact=True)


def test_task_keys_depend_on_content_settings_and_repeat_not_on_paths(engine_cohort, engine_variants, tmp_path):
    moved = engine_cohort.copy()
    for col in (schema.IMAGE, schema.MASK):
        moved[col] = [str(shutil.copy(p, tmp_path / Path(p).name)) for p in engine_cohort[col]]
    keys = [t.key for g in plan(engine_cohort, engine_variants, ENGINE_PARAMS) for t in g.tasks]
    assert keys == [t.key for g in plan(moved, engine_variants, ENGINE_PARAMS) for t in g.tasks]
    assert len(set(keys)) == len(keys) == 24
    other = merge_params(ENGINE_PARAMS, {"setting": {"distances": [2]}})
    assert not set(keys) & {t.key for g in plan(engine_cohort, engine_variants, other) for t in g.tasks}
    two = [t.key for g in plan(engine_cohort, engine_variants, ENGINE_PARAMS, repeats=2) for t in g.tasks]
    assert len(set(two)) == 48 and set(keys) <= set(two)


def test_bad_run_options_are_config_errors_before_the_run_directory_is_made(engine_cohort, tmp_path):
    for option, fragment in (({"workers": -1}, "workers must be >= 0, got -1"),
                             ({"repeats": 0}, "repeats must be >= 1, got 0"),
                             ({"threads_per_worker": -2}, "threads_per_worker must be >= 0, got -2"),
                             ({"executor": "threads"}, "got 'threads'")):
        with pytest.raises(ConfigError, match=fragment):
            run_tasks(engine_cohort, None, ENGINE_PARAMS, tmp_path / "run", progress=False, **option)
    assert not (tmp_path / "run").exists()


def test_failures_are_isolated_recorded_and_not_retried_unless_asked(engine_cohort, tmp_path):
    variants = expand_design({"grid": [{"erode_dilate": {"distance_mm": [-1.0, -9.0]}}]}, seed=0)
    cases = engine_cohort.copy()
    single = sitk.Image(sitk.ReadImage(cases[schema.MASK][1])) * 0
    single[8, 9, 5] = 1
    sitk.WriteImage(single, str(tmp_path / "single.nrrd"))
    cases.loc[1, schema.MASK] = str(tmp_path / "single.nrrd")
    out = tmp_path / "run"
    run = run_tasks(cases, variants, ENGINE_PARAMS, out, executor="serial", progress=False)
    assert (run.total, run.done, run.failed) == (6, 2, 4)
    errors = run.failures.set_index([schema.CASE_ID, schema.VARIANT_ID])[schema.ERROR]
    eroded_away = variants[2].variant_id
    assert "PerturbationError" in errors[("a", eroded_away)] and "max_volume_loss" in errors[("a", eroded_away)]
    assert "1 segmented voxel" in errors[("b", schema.ORIGINAL)]
    assert set(run.features[schema.CASE_ID]) == {"a"} and run.features[schema.VARIANT_ID].nunique() == 2
    assert pd.read_parquet(out / FAILURES_NAME).shape[0] == 4

    again = run_tasks(cases, variants, ENGINE_PARAMS, out, executor="serial", progress=False)
    assert (again.resumed, again.failed) == (6, 4)
    retried = run_tasks(cases, variants, ENGINE_PARAMS, out, executor="serial", progress=False, retry_failed=True)
    assert (retried.resumed, retried.failed) == (2, 4)
    pd.testing.assert_frame_equal(retried.failures, run.failures)


def test_engine_settings_section_validates():
    config = validate({"engine": {"executor": "dask", "workers": 2, "retry_failed": True}}, experiment_schema())
    assert config["engine"] == {"executor": "dask", "workers": 2, "scheduler": "", "threads_per_worker": 0, "repeats": 1,
                                "retry_failed": True}
    with pytest.raises(ConfigError, match="engine.executor"):
        validate({"engine": {"executor": "threads"}}, experiment_schema())


def test_a_free_local_worker_takes_the_next_part_of_its_group_else_the_longest_unit():
    from types import SimpleNamespace

    from harmony.extraction.executors import _next_unit

    a, b = object(), object()
    pending = [SimpleNamespace(group=b, name="b-wavelet"), SimpleNamespace(group=a, name="a-log"),
               SimpleNamespace(group=b, name="b-log")]
    assert _next_unit(pending, SimpleNamespace(group=a)).name == "a-log"  # the worker holds a's images
    assert _next_unit(pending, SimpleNamespace(group=a)).name == "b-wavelet"  # a is done: the longest left
    assert [u.name for u in pending] == ["b-log"]
