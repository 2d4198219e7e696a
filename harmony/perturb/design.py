"""Perturbation designs: ``[[grid]]`` and ``[[draw]]`` tables expanded into variants with recorded seeds."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import numpy as np

from harmony.core.config import Field, Section, validate
from harmony.core.errors import ConfigError
from harmony.core.files import canonical_json
from harmony.perturb.ops import PerturbationError
from harmony.perturb.specs import _GROUP, SPEC_TYPES, Spec, _Param
from harmony.perturb.variants import Variant, _settings_identity, stable_int

__all__ = ["DESIGN", "expand_design"]


def _is_single(p: _Param, value: Any) -> bool:
    """A grid value is one level unless it is a list (for vectors: a list that holds vectors or names)."""
    if not isinstance(value, list):
        return True
    return p.vector and not any(isinstance(v, (list, str)) for v in value) and bool(value)


def _message(p: _Param, value: Any) -> str | None:
    try:
        p.normalise(value)
    except ValueError as exc:
        return str(exc)
    return None


def _grid_check(p: _Param):
    def check(value: Any) -> str | None:
        if _is_single(p, value):
            return _message(p, value)
        if not value:
            return "give at least one level"
        return next((f"level {i}: {m}" for i, v in enumerate(value) if (m := _message(p, v))), None)
    return check


def _draw_check(p: _Param):
    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return _message(p, value)
        if len(value) != 1 or next(iter(value)) not in ("uniform", "choice"):
            return "a random parameter is {uniform = [low, high]} or {choice = [a, b, ...]}"
        how, spec = next(iter(value.items()))
        if not isinstance(spec, list) or not spec or (how == "uniform" and len(spec) != 2):
            return f"{how} needs " + ("[low, high]" if how == "uniform" else "a non-empty list")
        if how == "uniform" and p.kind not in ("float", "int", "vec3"):
            return "uniform draws need a numeric parameter; use choice"
        bad = next((m for v in spec if (m := _message(p, v))), None)
        if bad:
            return bad
        if how == "uniform" and np.any(np.asarray(p.normalise(spec[0])) > np.asarray(p.normalise(spec[1]))):
            return "uniform low must be <= high"
        return None
    return check


def _kind_section(cls: type[Spec], check_factory) -> Section:
    params: dict[str, Field] = {}
    for f in fields(cls):
        p = f.metadata["param"]
        if p.kind == "seed":
            continue
        default = {} if f.default is dataclasses.MISSING else {"default": f.default}
        params[f.name] = Field(object, **default, check=check_factory(p), doc=p.doc)
    if cls.stochastic:
        params["repeats"] = Field(int, 1, min=1, doc="independent draws (seeds) of each level")
    return Section(params, doc=(cls.__doc__ or "").strip().splitlines()[0], optional=True)


def _needs_kind(table: dict) -> str | None:
    if not any(table.get(kind) is not None for kind in SPEC_TYPES):
        return f"name at least one perturbation ({', '.join(SPEC_TYPES)})"
    return None


_GRID = Section({k: _kind_section(c, _grid_check) for k, c in SPEC_TYPES.items()}, check=_needs_kind,
                doc="every combination of the listed levels")


_DRAW = Section({"n": Field(int, min=1, doc="number of samples"),
                 **{k: _kind_section(c, _draw_check) for k, c in SPEC_TYPES.items()}},
                check=_needs_kind, doc="n samples; each parameter fixed, {uniform = [lo, hi]} or {choice = [...]}")


#: The design schema: a standalone DESIGN.toml and the ``[perturbations]`` section of an experiment config.
DESIGN = Section(
    {
        "description": Field(str, ""),
        "grid": Field(list, [], item=_GRID, doc="[[grid]] tables: all combinations of their levels"),
        "draw": Field(list, [], item=_DRAW, doc="[[draw]] tables: n random samples, drawn once from the seed"),
    },
    doc="Perturbation design; the original (unperturbed) variant is always included.",
)


def _strip_none(obj: Any) -> Any:
    """Drop absent optional sections (None after validation) so a validated design validates again."""
    if isinstance(obj, Mapping):
        return {k: _strip_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_strip_none(v) for v in obj]
    return obj


def _spec_seed(seed: int, kind: str, params: Mapping[str, Any], repeat: int, sample: list | None = None) -> int:
    """A spec's seed from the experiment seed and its own parameters, so the same level gets the same draws
    in every grid it appears in (and the engine can share its images) whatever else the design holds.
    ``sample`` (a draw block's hash and the sample's index) makes each sample of a draw its own stream, so
    ``n`` samples of a stochastic spec with fixed parameters are ``n`` independent realisations."""
    return stable_int(canonical_json([int(seed), kind, params, repeat] + ([] if sample is None else [sample])))


def _specs(cls: type[Spec], params: dict[str, Any], repeats: int, seed: int, where: str,
           sample: list | None = None) -> list[Spec]:
    try:
        if not cls.stochastic:
            return [cls(**params)]
        base = cls(**params).to_dict()
        return [cls(**params, seed=_spec_seed(seed, cls.kind, base, r, sample)) for r in range(repeats)]
    except PerturbationError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _grid_specs(cls: type[Spec], table: dict, seed: int, where: str) -> list[Spec]:
    table = dict(table)
    repeats = table.pop("repeats", 1)
    names = list(table)
    levels = [[table[n]] if _is_single(cls.__dataclass_fields__[n].metadata["param"], table[n]) else table[n]
              for n in names]
    return [s for combo in itertools.product(*levels)
            for s in _specs(cls, dict(zip(names, combo)), repeats, seed, where)]


def _sample(p: _Param, value: Any, rng: np.random.Generator) -> Any:
    if not isinstance(value, dict):
        return value
    how, spec = next(iter(value.items()))
    if how == "choice":
        return spec[int(rng.integers(len(spec)))]
    low, high = (np.asarray(p.normalise(v), float) for v in spec)
    if p.kind == "int":
        return int(rng.integers(int(low), int(high) + 1))
    drawn = rng.uniform(low, high)
    return [float(v) for v in drawn] if p.vector else float(drawn)


def _draw_specs(block: dict, seed: int, where: str) -> list[list[list[Spec]]]:
    """Per sample, per kind, the specs (several for a stochastic kind with repeats)."""
    block_key = stable_int(canonical_json(block))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), block_key]))
    samples = []
    for i in range(block["n"]):
        per_kind = []
        for kind, cls in SPEC_TYPES.items():
            table = block.get(kind)
            if table is None:
                continue
            table = dict(table)
            repeats = table.pop("repeats", 1)
            params = {n: _sample(cls.__dataclass_fields__[n].metadata["param"], v, rng) for n, v in table.items()}
            per_kind.append(_specs(cls, params, repeats, seed, f"{where} sample {i}.{kind}", [block_key, i]))
        samples.append(per_kind)
    return samples


def expand_design(design: Mapping[str, Any], *, seed: int, base_params: Mapping[str, Any] | None = None,
                  source: str = "<design>") -> list[Variant]:
    """Turn a design into variants: ``original`` first, then grids, then draws; duplicates collapse.

    A ``[[grid]]`` table gives every combination of its levels (a list is several levels); a ``[[draw]]``
    table ``n`` samples, each parameter fixed, ``{uniform = [low, high]}`` or ``{choice = [...]}``, drawn
    once from ``seed``. Chains are ordered image specs, then mask specs, then settings specs (the table of
    :mod:`harmony.perturb.specs`). A stochastic level with ``repeats = n`` gives ``n`` independent seeds.

    Parameters
    ----------
    design : mapping
        A design (:data:`DESIGN`): the ``[perturbations]`` section of an experiment config, or a design
        TOML parsed.
    seed : int
        The experiment seed: every spec's seed derives from it and the spec's own parameters, so a level
        gets the same draws in every design it appears in.
    base_params : mapping, optional
        The base pyradiomics parameters: a bin width or count equal to the base one is an identity.
    source : str, default "<design>"
        Where the design came from, for the messages.

    Returns
    -------
    list of Variant
        Unique by ``variant_id``, ``original`` first.

    Raises
    ------
    ConfigError
        The design does not validate (unknown kind or parameter, bad level), naming the grid or draw table.

    Examples
    --------
    Two noise levels with two draws each (level 0 is the original) times an erosion and a dilation:

    >>> design = {"grid": [{"noise": {"level": [0.0, 5.0], "repeats": 2}, "erode_dilate": {"distance_mm": [-1, 1]}}]}
    >>> variants = expand_design(design, seed=0)
    >>> len(variants), variants[0].variant_id
    (7, 'original')
    >>> sorted({v.kind for v in variants})
    ['mask', 'mask+noise', 'original']
    """
    design = validate(_strip_none(design), DESIGN, file=source)
    chains: list[tuple[Spec, ...]] = [()]
    for i, grid in enumerate(design["grid"]):
        factors = [_grid_specs(cls, grid[kind], seed, f"{source}: grid[{i}].{kind}")
                   for kind, cls in SPEC_TYPES.items() if grid.get(kind) is not None]
        chains.extend(itertools.product(*factors))
    for j, block in enumerate(design["draw"]):
        for per_kind in _draw_specs(block, seed, f"{source}: draw[{j}]"):
            chains.extend(itertools.product(*per_kind))
    variants: dict[str, Variant] = {}
    for chain in chains:
        ordered = sorted(chain, key=lambda s: _GROUP[s.target])  # stable: keeps the kind order within a group
        variant = Variant(tuple(s for s in ordered if not _settings_identity(s, base_params)))
        variants.setdefault(variant.variant_id, variant)
    return list(variants.values())
