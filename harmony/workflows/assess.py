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
from harmony.core.manifest import build_manifest, now_utc, write_manifest
from harmony.core.schema import STABLE
from harmony.reliability.settings import DEFAULT_SEED, SETTINGS, resolve_settings
from harmony.reliability.table import PAIRWISE, pairwise_ccc, reliability_table
from harmony.reliability.verdicts import feature_verdicts
from harmony.workflows.experiment import load_experiment


def load_settings(config: str | os.PathLike | None = None,
                  overrides: Sequence[str] = ()) -> tuple[dict[str, Any], int]:
    """The ``[reliability]`` settings and the experiment seed, from an experiment config and ``--set`` text.

    Without a config only ``reliability.*`` overrides are accepted, and the seed is :data:`DEFAULT_SEED`.
    """
    if config is not None:
        experiment = load_experiment(config, overrides)
        return experiment["reliability"], experiment["experiment"]["seed"]
    raw, _ = apply_overrides({}, overrides)
    other = sorted(set(raw) - {"reliability"})
    if other:
        raise ConfigError(f"--set: only reliability.* keys can be set without --config, got {other[0]!r}")
    return validate(raw.get("reliability", {}), SETTINGS, file="--set", prefix="reliability"), DEFAULT_SEED


# -- the command ----------------------------------------------------------------------------------------

#: Files :func:`run` writes into its output directory.
OUTPUTS = {"reliability": "reliability.parquet", "pairwise": "ccc_pairwise.parquet",
           "verdicts": "stable_features.csv"}


def run_reliability(features_path: str | os.PathLike, out_dir: str | os.PathLike, *,
        variants_path: str | os.PathLike | None = None, settings: Mapping[str, Any] | None = None,
        seed: int = DEFAULT_SEED, progress: bool | None = None) -> dict[str, pd.DataFrame]:
    """``harmony reliability``: read the tables, compute, write :data:`OUTPUTS` and a manifest.

    Without ``variants_path`` a ``variants.parquet`` beside the features file is used when present;
    otherwise every non-original variant is of kind ``all``. The bootstrap draws from
    ``numpy.random.default_rng(seed)``.
    """

    started = now_utc()
    settings = resolve_settings(settings)
    features = read_table(features_path, schema.FEATURES)
    beside = Path(features_path).with_name("variants.parquet")
    if variants_path is None and beside.is_file():
        variants_path = beside
    variants = None if variants_path is None else read_table(variants_path, schema.VARIANTS)
    table = reliability_table(features, variants, settings=settings, rng=np.random.default_rng(seed),
                              progress=progress)
    results = {"reliability": table, "pairwise": pairwise_ccc(features, variants, settings=settings),
               "verdicts": feature_verdicts(table, settings)}
    out = Path(out_dir)
    write_table(table, out / OUTPUTS["reliability"], schema.RELIABILITY)
    write_table(results["pairwise"], out / OUTPUTS["pairwise"], PAIRWISE)
    write_text(out / OUTPUTS["verdicts"], results["verdicts"].to_csv(index=False))
    n_features = len(results["verdicts"])
    write_manifest(out, build_manifest(
        command="reliability", config={"reliability": settings}, seeds={"bootstrap": seed}, started=started,
        tasks={"features": n_features, "stable": int(results["verdicts"][STABLE].sum())},
        inputs={"features": str(Path(features_path).resolve()),
                "variants": None if variants_path is None else str(Path(variants_path).resolve())},
    ))
    return results
