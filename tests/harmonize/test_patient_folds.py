"""Lesions of one patient never sit on both sides of a cross-validation split of the site classifier."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harmony.core import schema
from harmony.harmonize.metrics import harmonization_metrics, site_classifier_accuracy


def _lesions(n_patients: int = 40, n_features: int = 30, seed: int = 0):
    """Two nearly identical lesions per patient, no site effect at all: only a leak between folds can tell
    the sites apart (the classifier recognises the patient)."""
    rng = np.random.default_rng(seed)
    patient = rng.normal(size=(n_patients, n_features)) * 3
    rows, cases = [], []
    for p in range(n_patients):
        site = f"site{p % 2}"
        for lesion in range(2):
            case_id = f"p{p:02d}_l{lesion}"
            values = patient[p] + rng.normal(scale=0.01, size=n_features)
            rows += [{schema.CASE_ID: case_id, schema.SITE: site, schema.FEATURE: f"f{j}", schema.VALUE: v}
                     for j, v in enumerate(values)]
            cases.append({schema.CASE_ID: case_id, schema.SITE: site, schema.IMAGE: "", schema.MASK: "",
                          schema.PATIENT_ID: f"p{p:02d}"})
    return pd.DataFrame(rows), pd.DataFrame(cases)


def test_grouped_folds_remove_the_leak_between_a_patients_lesions():
    features, cases = _lesions()
    groups = cases.set_index(schema.CASE_ID)[schema.PATIENT_ID]
    leaky = site_classifier_accuracy(features)["accuracy"]
    grouped = site_classifier_accuracy(features, groups=groups)
    assert leaky > 0.8  # the twin lesion in the training fold gives the site away
    assert abs(grouped["accuracy"] - grouped["chance"]) < 0.2 and grouped["folds"] == 5


def test_harmonization_metrics_group_by_the_cases_patient_id():
    features, cases = _lesions()
    table = features.assign(**{schema.VARIANT_ID: schema.ORIGINAL, schema.REPEAT: 0, schema.STAGE: "raw"})
    summary = harmonization_metrics(table, cases)["summary"].set_index(schema.METRIC)[schema.ESTIMATE]
    assert summary["site_classifier_accuracy"] < 0.7
    without = harmonization_metrics(table, cases.drop(columns=[schema.PATIENT_ID]))["summary"]
    assert without.set_index(schema.METRIC).loc["site_classifier_accuracy", schema.ESTIMATE] > 0.8
