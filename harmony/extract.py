"""The pyradiomics adapter: parameters in, tidy feature rows out.

This is the only module that knows pyradiomics' parameter layout, its result keys and its loggers.
Parameters are always passed to pyradiomics as a dict so that its own schema validates them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml

from harmony import schema
from harmony.errors import CaseError, ConfigError

logger = logging.getLogger(__name__)

#: The top-level keys of a pyradiomics parameter file.
PARAM_SECTIONS = ("setting", "imageType", "featureClass", "voxelSetting")


def load_params(path: str | os.PathLike) -> dict[str, Any]:
    """Read a pyradiomics parameter file (.yaml/.yml with ``safe_load``, .toml or .json) into a dict."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: parameter file not found") from None
    try:
        if suffix in (".yaml", ".yml"):
            params = yaml.safe_load(text)
        elif suffix == ".toml":
            params = tomllib.loads(text)
        elif suffix == ".json":
            params = json.loads(text)
        else:
            raise ConfigError(f"{path}: unknown parameter file type {suffix!r} (use .yaml, .yml, .toml or .json)")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse parameters ({exc})") from None
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: parameters must be a mapping, got {type(params).__name__}")
    return params


def merge_params(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two parameter dicts section by section (``override`` wins).

    >>> merge_params({"setting": {"binWidth": 25, "label": 1}}, {"setting": {"binWidth": 10}})
    {'setting': {'binWidth': 10, 'label': 1}}
    """
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **copy.deepcopy(dict(value))}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _radiomics_logging() -> None:
    """pyradiomics adds its own stderr handler at import; send its records through ``logging`` instead.

    Its INFO and WARNING chatter (one line per feature class and case) is kept at DEBUG verbosity only.
    """
    import radiomics

    log = logging.getLogger("radiomics")
    if getattr(log, "_harmony_configured", False):
        return
    # a NullHandler, not none: pyradiomics hands handlers[0] to pykwalify when the root has no handler
    log.handlers[:] = [logging.NullHandler()]
    log.propagate = True
    log.setLevel(logging.DEBUG if logging.getLogger("harmony").isEnabledFor(logging.DEBUG) else logging.ERROR)
    log._harmony_configured = True
    radiomics.logger = log


@contextlib.contextmanager
def _quiet_pykwalify() -> Iterator[None]:
    """pykwalify logs every validation error at ERROR level before raising; we raise our own message."""
    log = logging.getLogger("pykwalify")
    old = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(old)


def _schema_messages(exc: Exception) -> str:
    text = getattr(exc, "msg", None) or str(exc)
    lines = [ln.strip()[2:].rstrip(".") for ln in str(text).splitlines() if ln.strip().startswith("- ")]
    return "; ".join(lines) if lines else str(text)


def make_extractor(params: Mapping[str, Any], source: str = "<params>"):
    """A ``RadiomicsFeatureExtractor`` built from a parameter dict, validated by pyradiomics' schema.

    A misspelt top-level section (which the schema would not see as an error) is refused too.
    """
    from pykwalify.errors import PyKwalifyException
    from radiomics import featureextractor

    _radiomics_logging()
    params = copy.deepcopy(dict(params))
    unknown = [k for k in params if k not in PARAM_SECTIONS]
    if unknown:
        raise ConfigError(f"{source}: unknown pyradiomics parameter section {unknown[0]!r} "
                          f"(known: {', '.join(PARAM_SECTIONS)})")
    try:
        with _quiet_pykwalify():
            extractor = featureextractor.RadiomicsFeatureExtractor(params)
    except PyKwalifyException as exc:
        raise ConfigError(f"{source}: pyradiomics rejected the parameters: {_schema_messages(exc)}") from None
    except ValueError as exc:  # unknown image type or feature class
        raise ConfigError(f"{source}: pyradiomics rejected the parameters: {exc}") from None
    return extractor


@dataclass(frozen=True)
class Extraction:
    """One extraction's result: feature values (float64) and diagnostics (JSON-able)."""

    features: dict[str, float]
    diagnostics: dict[str, Any]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim else value.item()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def split_result(result: Mapping[str, Any]) -> Extraction:
    """Separate pyradiomics' ``execute`` output into float features and diagnostics."""
    features: dict[str, float] = {}
    diagnostics: dict[str, Any] = {}
    for key, value in result.items():
        if key.startswith(schema.DIAGNOSTICS_PREFIX):
            diagnostics[key] = _jsonable(value)
        else:
            features[key] = float(value)
    return Extraction(features, diagnostics)


def read_image(path: str | os.PathLike, what: str = "image", case_id: str | None = None) -> sitk.Image:
    """Read an image with SimpleITK; a missing or unreadable file raises CaseError naming it."""
    who = f"case {case_id!r}: " if case_id is not None else ""
    path = Path(path)
    if not path.is_file():
        raise CaseError(f"{who}{what} file not found: {path}")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaseError(f"{who}{what} file is unreadable: {path} ({first})") from None


def _as_image(obj: sitk.Image | str | os.PathLike, what: str) -> sitk.Image:
    return obj if isinstance(obj, sitk.Image) else read_image(obj, what)


def extract(image: sitk.Image | str | os.PathLike, mask: sitk.Image | str | os.PathLike,
            params: Mapping[str, Any] | Any, label: int | None = None) -> Extraction:
    """Extract one case with pyradiomics' ``execute``.

    ``params`` is a parameter dict or an extractor from :func:`make_extractor` (reuse one across cases).
    """
    extractor = make_extractor(params) if isinstance(params, Mapping) else params
    result = extractor.execute(_as_image(image, "image"), _as_image(mask, "mask"), label=label)
    return split_result(result)


def feature_rows(features: Mapping[str, float], *, case_id: str, site: str,
                 variant_id: str = schema.ORIGINAL, repeat: int = 0) -> pd.DataFrame:
    """Tidy rows of the features table for one extraction.

    >>> feature_rows({"original_firstorder_Mean": 2.5}, case_id="c1", site="A").to_dict("records")
    [{'case_id': 'c1', 'site': 'A', 'variant_id': 'original', 'repeat': 0, 'feature': 'original_firstorder_Mean', 'value': 2.5}]
    """
    n = len(features)
    return pd.DataFrame({
        schema.CASE_ID: [case_id] * n,
        schema.SITE: [site] * n,
        schema.VARIANT_ID: [variant_id] * n,
        schema.REPEAT: np.full(n, repeat, dtype="int64"),
        schema.FEATURE: list(features.keys()),
        schema.VALUE: np.fromiter(features.values(), dtype="float64", count=n),
    })


def feature_class(feature: str) -> str:
    """The pyradiomics feature class of a feature key (``original_glcm_Contrast`` -> ``glcm``).

    >>> feature_class("wavelet-LLH_glszm_ZonePercentage")
    'glszm'
    """
    parts = feature.split("_")
    if len(parts) < 3:
        raise ValueError(f"not a pyradiomics feature key: {feature!r}")
    return parts[-2]


def image_type(feature: str) -> str:
    """The image type a feature was computed on (``log-sigma-1-0-mm-3D_glcm_Idm`` -> ``log-sigma-1-0-mm-3D``).

    >>> image_type("original_shape_Sphericity")
    'original'
    """
    return feature.rsplit("_", 2)[0]


def extract_cases(cases: pd.DataFrame, params: Mapping[str, Any], *, label: int | None = None,
                  progress: bool | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Extract every case of a cases table serially, original images only.

    Returns (features, failures, diagnostics per case). A case that raises becomes a failures row and
    the others go on. :mod:`harmony.engine` runs perturbation variants, in parallel and resumably.
    """
    from tqdm.auto import tqdm

    extractor = make_extractor(params)
    frames, failures, diagnostics = [], [], {}
    rows = cases.to_dict("records")
    for case in tqdm(rows, desc="extract", unit="case", disable=None if progress is None else not progress):
        case_id = case[schema.CASE_ID]
        try:
            result = extract(read_image(case[schema.IMAGE], "image", case_id),
                             read_image(case[schema.MASK], "mask", case_id), extractor, label=label)
        except Exception as exc:  # one failed case must not lose the others
            logger.warning("case %r failed: %s", case_id, exc)
            failures.append({schema.CASE_ID: case_id, schema.VARIANT_ID: schema.ORIGINAL, schema.REPEAT: 0,
                             schema.ERROR: f"{type(exc).__name__}: {exc}"})
            continue
        frames.append(feature_rows(result.features, case_id=case_id, site=case[schema.SITE]))
        diagnostics[case_id] = result.diagnostics
    features = pd.concat(frames, ignore_index=True) if frames else schema.FEATURES.empty()
    failed = pd.DataFrame(failures) if failures else schema.FAILURES.empty()
    return schema.FEATURES.validate(features), schema.FAILURES.validate(failed), diagnostics
