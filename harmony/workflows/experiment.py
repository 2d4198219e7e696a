"""The experiment config: each stage's section assembled into one schema, read and resolved."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harmony.core.config import Field, Section, load, parse_override
from harmony.core.resources import is_bare_name, resolve
from harmony.extraction.settings import SETTINGS as ENGINE_SETTINGS
from harmony.extraction.settings import STANDARDS
from harmony.gate.settings import SETTINGS as GATE_SETTINGS
from harmony.harmonize.settings import SETTINGS as HARMONIZATION_SETTINGS
from harmony.perturb.design import DESIGN as PERTURBATION_DESIGN
from harmony.phantoms.specs import cohort_field_check
from harmony.reliability.settings import SETTINGS as RELIABILITY_SETTINGS

__all__ = ["experiment_schema", "load_experiment"]


def _cases_check(section: dict) -> str | None:
    sources = [k for k in ("csv", "cohort") if section.get(k)]
    if len(sources) > 1:
        return "give either cases.csv or cases.cohort, not both"
    return None


def experiment_schema() -> Section:
    """The experiment config's schema: the sections each stage declares, under their config names.

    Returns
    -------
    Section
        ``experiment``, ``cases``, ``extraction``, ``perturbations``, ``engine``, ``reliability``,
        ``harmonization``, ``gate`` and ``report``.

    Examples
    --------
    >>> list(experiment_schema().fields)
    ['experiment', 'cases', 'extraction', 'perturbations', 'engine', 'reliability', 'harmonization', 'gate', 'report']
    """
    return Section(
        {
            "experiment": Section(
                {
                    "name": Field(str, "experiment", doc="Run name; the default output is reports/<name>."),
                    "seed": Field(int, 0, min=0, doc="Root of every random draw (numpy SeedSequence)."),
                    "out": Field(str, "", doc="Output directory; empty means reports/<name>."),
                    "description": Field(str, ""),
                }
            ),
            "cases": Section(
                {
                    "csv": Field(str, "", doc="A cases CSV (case_id,image,mask,site,...), paths relative to it."),
                    "cohort": Field(object, "", check=cohort_field_check,
                                    doc="A phantom cohort: path to its TOML, or an inline table."),
                    "label": Field(int, 1, min=1, doc="Mask label to extract."),
                    "geometry_tolerance": Field(float, 1e-4, min=0.0,
                                                doc="Largest image/mask difference in spacing, origin, direction."),
                },
                check=_cases_check,
            ),
            "extraction": Section(
                {
                    "params": Field(str, "", doc="pyradiomics parameter file (.yaml, .yml, .toml or .json)."),
                    "settings": Field(dict, {}, doc="Inline pyradiomics parameters (setting, imageType, "
                                                    "featureClass), merged over params; checked by pyradiomics."),
                    "standard": Field(str, "pyradiomics", choices=STANDARDS,
                                      doc="pyradiomics (its own processing) or ibsi (IBSI 1 processing around it)."),
                    "ibsi": Field(dict, {}, doc="IBSI-mode options: round_intensities (auto), roi_threshold "
                                                "(0.5), outlier_sigma (with resegmentRange)."),
                }
            ),
            "perturbations": PERTURBATION_DESIGN,
            "engine": ENGINE_SETTINGS,
            "reliability": RELIABILITY_SETTINGS,
            "harmonization": HARMONIZATION_SETTINGS,
            "gate": GATE_SETTINGS,
            "report": Section({"enabled": Field(bool, True)}),
        }
    )


def load_experiment(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read, override and validate an experiment config: a TOML file, or a built-in name (``quickstart``).

    Relative paths written in the file are resolved against its folder; relative paths given with ``--set``
    against the working directory, as any other path typed on a command line.

    Parameters
    ----------
    path : str or os.PathLike
        An experiment TOML, or the name of a built-in one (``harmony examples list``).
    overrides : sequence of str, default ()
        ``dotted.key=value`` texts (``harmony run --set``).

    Returns
    -------
    dict
        The validated config, every default filled in, paths resolved; ``experiment.out`` defaults to
        ``reports/<name>``, and ``_source`` is the file read.

    Raises
    ------
    ConfigError
        The file cannot be read, or the config (with the overrides) does not validate; the message names
        the file (or ``--set``), the dotted key and the value.

    Examples
    --------
    >>> config = load_experiment("quickstart", ["cases.cohort.cohort.subjects=12", "engine.workers=1"])
    >>> config["experiment"]["out"], config["cases"]["cohort"]["cohort"]["subjects"], config["engine"]["workers"]
    ('reports/quickstart', 12, 1)
    >>> load_experiment("quickstart", ["reliability.icc=ICC(2,1)"])
    Traceback (most recent call last):
    ...
    harmony.core.errors.ConfigError: --set: reliability.icc: must be one of [...], got 'ICC(2,1)'
    """
    path = resolve(path, "experiment")
    config = load(path, experiment_schema(), overrides)
    from_command_line = {parse_override(text)[0] for text in overrides}
    config_dir = path.resolve().parent
    if not config["experiment"]["out"]:
        config["experiment"]["out"] = str(Path("reports") / config["experiment"]["name"])
    for section, key in (("cases", "csv"), ("extraction", "params"), ("cases", "cohort")):
        value = config[section][key]
        if isinstance(value, str) and value:
            base = Path.cwd() if f"{section}.{key}" in from_command_line else config_dir
            if key == "cohort" and is_bare_name(value) and not (base / value).is_file():
                continue  # a built-in cohort spec, e.g. cohort_demo
            config[section][key] = str((base / value).resolve())
    config["_source"] = str(path.resolve())
    return config
