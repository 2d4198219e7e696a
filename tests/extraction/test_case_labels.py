"""A per-case ``label`` column reaches the extraction, and cases with byte-identical files stay two tasks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.cases import load_cases
from harmony.extraction.adapter import extract
from harmony.extraction.engine import run_tasks
from harmony.phantoms import ibsi_digital_phantom

PARAMS = {"setting": {"binWidth": 1}, "imageType": {"Original": {}}, "featureClass": {"firstorder": [], "shape": []}}


def test_each_case_is_extracted_with_its_own_label_and_id(tmp_path):
    image, mask = ibsi_digital_phantom()
    relabelled = sitk.Cast(mask, sitk.sitkUInt8) * 2
    sitk.WriteImage(image, str(tmp_path / "image.nrrd"))
    sitk.WriteImage(mask, str(tmp_path / "mask1.nrrd"))
    sitk.WriteImage(relabelled, str(tmp_path / "mask2.nrrd"))
    rows = [{"case_id": "one", "image": "image.nrrd", "mask": "mask1.nrrd", "site": "a", "label": None},
            {"case_id": "twin", "image": "image.nrrd", "mask": "mask1.nrrd", "site": "b", "label": None},
            {"case_id": "two", "image": "image.nrrd", "mask": "mask2.nrrd", "site": "a", "label": 2}]
    pd.DataFrame(rows).to_csv(tmp_path / "cases.csv", index=False)
    cases = load_cases(tmp_path / "cases.csv")
    result = run_tasks(cases, None, PARAMS, tmp_path / "out", executor="serial", progress=False)
    assert result.done == 3 and result.failed == 0
    features = result.features.pivot(index=schema.FEATURE, columns=schema.CASE_ID, values=schema.VALUE)
    expected = extract(image, mask, PARAMS).features
    for case in ("one", "twin", "two"):
        np.testing.assert_array_equal(features.loc[list(expected), case].to_numpy(), list(expected.values()))
    sites = result.features.drop_duplicates(schema.CASE_ID).set_index(schema.CASE_ID)[schema.SITE].astype(str)
    assert sites.to_dict() == {"one": "a", "twin": "b", "two": "a"}
