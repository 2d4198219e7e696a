"""The reliability stage (``harmony reliability``): read the tables, assess, write the outputs and a manifest."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmony.core import schema
from harmony.core.config import apply_overrides, validate
from harmony.core.errors import ConfigError
from harmony.core.files import read_table, write_table, write_text
from harmony.core.lock import RunLock
from harmony.core.manifest import build_manifest, now_utc, write_manifest
from harmony.core.schema import STABLE
from harmony.reliability.settings import DEFAULT_SEED, SETTINGS, resolve_settings
from harmony.reliability.table import INPUT_COLUMNS, PAIRWISE, pairwise_ccc, reliability_table
from harmony.reliability.verdicts import feature_verdicts, stable_by_perturbation
from harmony.workflows.experiment import load_experiment

__all__ = ["load_settings", "OUTPUTS", "run_reliability"]


def load_settings(config: str | os.PathLike | None = None,
                  overrides: Sequence[str] = ()) -> tuple[dict[str, Any], int]:
    """The ``[reliability]`` settings and the experiment seed, from an experiment config and ``--set`` text.

    Parameters
    ----------
    config : str or os.PathLike, optional
        An experiment config (a TOML file or a built-in name); without one only ``reliability.*``
        overrides are accepted, and the seed is :data:`~harmony.reliability.settings.DEFAULT_SEED`.
    overrides : sequence of str, default ()
        ``dotted.key=value`` texts.

    Returns
    -------
    (dict, int)
        The validated settings and the seed of the CCC bootstrap.

    Raises
    ------
    ConfigError
        The config or an override does not validate, or an override outside ``reliability.*`` without a
        config.

    Examples
    --------
    >>> settings, seed = load_settings(overrides=["reliability.icc=ICC(C,1)"])
    >>> settings["icc"], seed
    ('ICC(C,1)', 0)
    >>> load_settings(overrides=["engine.workers=2"])
    Traceback (most recent call last):
    ...
    harmony.core.errors.ConfigError: --set: only reliability.* keys can be set without --config, got 'engine'
    """
    if config is not None:
        experiment = load_experiment(config, overrides)
        return experiment["reliability"], experiment["experiment"]["seed"]
    raw, _ = apply_overrides({}, overrides)
    other = sorted(set(raw) - {"reliability"})
    if other:
        raise ConfigError(f"--set: only reliability.* keys can be set without --config, got {other[0]!r}")
    return validate(raw.get("reliability", {}), SETTINGS, file="--set", prefix="reliability"), DEFAULT_SEED


#: Files :func:`run_reliability` writes into its output directory.
OUTPUTS = {"reliability": "reliability.parquet", "pairwise": "ccc_pairwise.parquet",
           "verdicts": "stable_features.csv", "by_perturbation": "stable_by_perturbation.csv"}


def run_reliability(features_path: str | os.PathLike, out_dir: str | os.PathLike, *,
        variants_path: str | os.PathLike | None = None, settings: Mapping[str, Any] | None = None,
        seed: int = DEFAULT_SEED, progress: bool | None = None,
        cases: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """``harmony reliability``: read the tables, compute, write :data:`OUTPUTS` and a manifest.

    Parameters
    ----------
    features_path : str or os.PathLike
        A features table (Parquet or CSV, schema.FEATURES), e.g. an extraction's ``features.parquet``.
    out_dir : str or os.PathLike
        Where to write the outputs.
    variants_path : str or os.PathLike, optional
        The variants table; without it a ``variants.parquet`` beside the features file is used when
        present, otherwise every non-original variant is of kind ``all``.
    settings : mapping, optional
        A ``[reliability]`` section (:func:`load_settings`).
    seed : int, default 0
        The bootstrap draws from ``numpy.random.default_rng(seed)``.
    progress : bool, optional
        A progress bar over the perturbation groups.
    cases : DataFrame, optional
        The cases table, to flag mixed modalities or label meanings.

    Returns
    -------
    dict of str to DataFrame
        ``reliability`` (:func:`harmony.reliability_table`), ``pairwise``
        (:func:`~harmony.reliability.table.pairwise_ccc`), ``verdicts`` (:func:`harmony.feature_verdicts`)
        and ``by_perturbation`` (:func:`~harmony.reliability.verdicts.stable_by_perturbation`).

    Raises
    ------
    SchemaError
        A table is missing or does not follow its contract.
    ConfigError
        ``settings`` do not validate.
    LockError
        Another live run holds ``out_dir``.
    StudyError
        Fewer cases than ``reliability.min_cases``.
    """

    started = now_utc()
    settings = resolve_settings(settings)
    out = Path(out_dir)
    with RunLock(out):  # refused while another run writes this folder (or the run folder it is in)
        features = read_table(features_path, schema.FEATURES, columns=INPUT_COLUMNS)
        beside = Path(features_path).with_name("variants.parquet")
        if variants_path is None and beside.is_file():
            variants_path = beside
        variants = None if variants_path is None else read_table(variants_path, schema.VARIANTS)
        table = reliability_table(features, variants, settings=settings, rng=np.random.default_rng(seed),
                                  progress=progress, cases=cases)
        results = {"reliability": table, "pairwise": pairwise_ccc(features, variants, settings=settings),
                   "verdicts": feature_verdicts(table, settings),
                   "by_perturbation": stable_by_perturbation(table, settings)}
        write_table(table, out / OUTPUTS["reliability"], schema.RELIABILITY)
        write_table(results["pairwise"], out / OUTPUTS["pairwise"], PAIRWISE)
        for name in ("verdicts", "by_perturbation"):
            write_text(out / OUTPUTS[name], results[name].to_csv(index=False))
        n_features = len(results["verdicts"])
        write_manifest(out, build_manifest(
            command="reliability", config={"reliability": settings}, seeds={"bootstrap": seed}, started=started,
            tasks={"features": n_features, "stable": int(results["verdicts"][STABLE].sum())},
            inputs={"features": str(Path(features_path).resolve()),
                    "variants": None if variants_path is None else str(Path(variants_path).resolve())},
        ))
    return results
