"""Perturbations of cases (image, mask) and of extraction settings: frozen specs, chains, designs.

A spec is a frozen dataclass whose parameters are in physical units (mm, degrees, image intensity units);
stochastic specs carry their own ``seed``. Applying a chain (:class:`Variant`) is a pure function of
``(image, mask, spec, case_id, repeat)``: it never writes to its inputs, and the random stream of a stochastic
spec is ``default_rng(SeedSequence([spec.seed, stable_int(case_id), repeat]))``. A design (TOML, schema
:data:`DESIGN`) lists grids (every combination of the listed levels) and random draws (``n`` samples from
ranges, drawn once from the experiment seed); :func:`expand_design` turns it into variants whose ids are
stable hashes of their chains.

Kinds (``family``, what they change):

========================  ===============  ==========  ===============================================
kind                      family           target      parameters
========================  ===============  ==========  ===============================================
``rotate``                geometry         image+mask  ``angle_deg``, ``axis``, ``interpolator``
``translate``             geometry         image+mask  ``fraction`` (of a voxel, per image axis)
``intensity``             calibration      image       ``scale``, ``offset``
``noise``                 noise            image       ``level``, ``relative``, ``distribution``
``resample``              resampling       image+mask  ``spacing_mm``, ``interpolator``, ``mask_rule``,
                                                       ``back_to_original``
``volume``                mask             mask        ``fraction`` of the original volume
``erode_dilate``          mask             mask        ``distance_mm`` (< 0 erodes), ``max_volume_loss``
``contour``               mask             mask        supervoxel randomisation (Zwanenburg et al. 2019)
``bin_width``             discretisation   settings    ``width``
``bin_count``             discretisation   settings    ``count``
========================  ===============  ==========  ===============================================

Chains expanded from a design apply them in this order: patient position, scanner calibration, acquisition
noise, reconstruction grid, then the delineation, then the extraction settings.

Geometric image work (rotate, translate, resample) is done on the ROI's neighbourhood (its bounding box
before and after, grown by ``margin_mm``, default 30 mm: wider than pyradiomics' LoG kernels up to
sigma 5 mm); the rest of the image keeps its values. ``resample`` without ``back_to_original`` returns that
neighbourhood on the new grid, as pyradiomics' own resampling does.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from harmony import perturb_ops as ops
from harmony import schema
from harmony.config import Field, Section, validate
from harmony.errors import ConfigError
from harmony.io import canonical_json, stable_hash
from harmony.perturb_ops import PerturbationError, estimate_noise
from harmony.perturb_specs import (_GROUP, SPEC_TYPES, BinCount, BinWidth, Contour, ErodeDilate, Intensity, Noise,
                                   Resample, Rotate, Spec, Translate, Volume, _Param, _State, spec_from_dict)
from harmony.progress import progress_bar

__all__ = [
    "DESIGN", "SPEC_TYPES", "BinCount", "BinWidth", "Contour", "ErodeDilate", "Intensity", "Noise",
    "PerturbationError", "Resample", "Rotate", "Spec", "Translate", "Variant", "Volume", "case_rng",
    "estimate_noise", "expand_design", "iter_variants", "perturb_cases", "spec_from_dict", "variants_from_table",
    "variants_table",
]

#: pyradiomics' bin width when its settings give neither binWidth nor binCount.
PYRADIOMICS_DEFAULT_BIN_WIDTH = 25.0


def stable_int(text: str) -> int:
    """A 60-bit integer of ``text`` that is the same in every process (unlike :func:`hash`)."""
    return int(stable_hash(text, length=15), 16)


def case_rng(seed: int, case_id: str, repeat: int = 0) -> np.random.Generator:
    """The random stream of a stochastic spec for one case and repeat.

    >>> a = case_rng(7, "lung1", 0).random(); a == case_rng(7, "lung1", 0).random() != case_rng(7, "lung1", 1).random()
    True
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), stable_int(str(case_id)), int(repeat)]))


def _settings_identity(spec: Spec, base: Mapping[str, Any] | None) -> bool:
    """Whether a discretisation spec repeats what the base pyradiomics parameters already do."""
    if base is None:
        return False
    setting = (base.get("setting") or {})
    if isinstance(spec, BinCount):
        return setting.get("binCount") == spec.count
    if isinstance(spec, BinWidth):
        return "binCount" not in setting and float(setting.get("binWidth", PYRADIOMICS_DEFAULT_BIN_WIDTH)) == spec.width
    return False


# -- variants --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """A chain of specs applied in order; identity specs are dropped. The empty chain is ``original``."""

    specs: tuple[Spec, ...] = ()

    def __post_init__(self) -> None:
        specs = tuple(self.specs)
        bad = [s for s in specs if not isinstance(s, Spec)]
        if bad:
            raise PerturbationError(f"a variant is a chain of specs, got {bad[0]!r}")
        object.__setattr__(self, "specs", tuple(s for s in specs if not s.is_identity))

    @cached_property
    def params(self) -> str:
        """The chain as JSON text: a list of spec dicts (key-sorted, compact)."""
        return canonical_json([s.to_dict() for s in self.specs])

    @cached_property
    def variant_id(self) -> str:
        return schema.ORIGINAL if not self.specs else stable_hash([s.to_dict() for s in self.specs])

    @property
    def kind(self) -> str:
        """The sorted families of the chain joined by "+", or "original"."""
        return "+".join(sorted({s.family for s in self.specs})) or schema.ORIGINAL

    @property
    def seed(self) -> int:
        """The stochastic spec's seed; a hash of their seeds when there are several; 0 when none is random."""
        seeds = [s.seed for s in self.specs if s.stochastic]
        return seeds[0] if len(seeds) == 1 else stable_int(canonical_json(seeds)) if seeds else 0

    @cached_property
    def _split(self) -> int:
        """Length of the chain prefix that changes the image."""
        touching = [i for i, s in enumerate(self.specs) if s.target in ("image", "image+mask")]
        return touching[-1] + 1 if touching else 0

    @cached_property
    def image_key(self) -> str:
        """Stable hash of the prefix that changes the image: equal keys mean equal images per (case, repeat)."""
        prefix = self.specs[: self._split]
        return schema.ORIGINAL if not prefix else stable_hash([s.to_dict() for s in prefix])

    @classmethod
    def from_params(cls, params: str) -> Variant:
        """Rebuild a variant from its ``params`` JSON (a recorded chain) for an exact replay."""
        try:
            chain = json.loads(params)
        except (TypeError, json.JSONDecodeError) as exc:
            raise PerturbationError(f"variant params are not JSON ({exc}): {params!r}") from None
        if not isinstance(chain, list):
            raise PerturbationError(f"variant params must be a JSON list of specs, got {params!r}")
        return cls(tuple(spec_from_dict(d) for d in chain))

    def apply_settings(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of the pyradiomics parameters with this chain's settings specs applied."""
        out = copy.deepcopy(dict(params))
        out["setting"] = dict(out.get("setting") or {})
        for spec in self.specs:
            if spec.target == "settings":
                out = spec.settings(out)
        return out

    def apply(self, image: sitk.Image, mask: sitk.Image, *, case_id: str, repeat: int = 0,
              label: int = 1) -> tuple[sitk.Image, sitk.Image]:
        """The perturbed ``(image, mask)`` of one case; the inputs are not modified.

        The ROI is ``mask == label``. A changed image is float32 (float64 stays float64), a changed mask is
        uint8 holding ``label`` in the ROI; what the chain does not change is returned as given. Raises
        :class:`PerturbationError` naming the case, the variant and the reason when it cannot be made.
        """
        state = _start(image, mask, case_id=case_id, label=label)
        state = self._run(self.specs, state, case_id=case_id, repeat=repeat)
        return _finish(state, image, mask, label)

    def _run(self, specs: Iterable[Spec], state: _State, *, case_id: str, repeat: int) -> _State:
        for spec in specs:
            if spec.target == "settings":
                continue
            rng = case_rng(spec.seed, case_id, repeat) if spec.stochastic else None
            try:
                state = spec.apply(state, rng)
            except PerturbationError as exc:
                raise PerturbationError(f"case {case_id!r}, variant {self.variant_id} ({spec.kind}): {exc}") from None
            if not state.roi.any():
                raise PerturbationError(f"case {case_id!r}, variant {self.variant_id}: the mask is empty after "
                                        f"{spec.kind} {canonical_json(spec.to_dict())}")
        return state


def _start(image: sitk.Image, mask: sitk.Image, *, case_id: str, label: int) -> _State:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise PerturbationError(f"case {case_id!r}: perturbations need a 3D scalar image, got "
                                f"{image.GetDimension()}D with {image.GetNumberOfComponentsPerPixel()} component(s)")
    if tuple(image.GetSize()) != tuple(mask.GetSize()):
        raise PerturbationError(f"case {case_id!r}: mask size {mask.GetSize()} differs from image size {image.GetSize()}")
    array = sitk.GetArrayFromImage(image)
    if array.dtype != np.float64:
        array = array.astype(np.float32, copy=False)
    roi = sitk.GetArrayViewFromImage(mask) == label
    if not roi.any():
        raise PerturbationError(f"case {case_id!r}: the mask has no voxel with label {label}")
    return _State(array, ops.Grid.of(image), roi)


def _finish(state: _State, image: sitk.Image, mask: sitk.Image, label: int) -> tuple[sitk.Image, sitk.Image]:
    out_image = state.grid.image(state.image) if state.image_changed else image
    if not state.mask_changed:
        return out_image, mask
    values = state.roi.astype(np.uint8 if label <= 255 else np.uint32)
    if label != 1:
        values *= values.dtype.type(label)
    return out_image, state.grid.image(values)


def iter_variants(image: sitk.Image, mask: sitk.Image, variants: Iterable[Variant], *, case_id: str,
                  repeat: int = 0, label: int = 1
                  ) -> Iterator[tuple[Variant, tuple[sitk.Image, sitk.Image] | None, PerturbationError | None]]:
    """Apply many variants to one case: yields ``(variant, (image, mask), None)`` or ``(variant, None, error)``.

    Variants sharing an ``image_key`` reuse one computed image (they are grouped, so the yield order groups
    them); each result equals ``variant.apply(...)`` bit for bit.
    """
    groups: dict[str, list[Variant]] = {}
    for v in variants:
        groups.setdefault(v.image_key, []).append(v)
    try:
        start = _start(image, mask, case_id=case_id, label=label)
    except PerturbationError as exc:
        for v in itertools.chain.from_iterable(groups.values()):
            yield v, None, exc
        return
    for group in groups.values():
        head = group[0]
        try:
            prefix = head._run(head.specs[: head._split], start, case_id=case_id, repeat=repeat)
        except PerturbationError as exc:
            for v in group:
                yield v, None, exc
            continue
        shared = _finish(dataclasses.replace(prefix, mask_changed=False), image, mask, label)[0]
        made: dict[tuple[Spec, ...], tuple[sitk.Image | None, PerturbationError | None]] = {}
        for v in group:
            suffix = tuple(s for s in v.specs[v._split:] if s.target != "settings")
            if suffix not in made:  # variants that differ only in their settings share the mask
                try:
                    state = v._run(suffix, prefix, case_id=case_id, repeat=repeat)
                    made[suffix] = _finish(dataclasses.replace(state, image_changed=False), image, mask, label)[1], None
                except PerturbationError as exc:
                    made[suffix] = None, exc
            out_mask, error = made[suffix]
            yield v, None if error else (shared, out_mask), error


def variants_table(variants: Iterable[Variant]) -> pd.DataFrame:
    """One row per variant (schema.VARIANTS): variant_id, kind, params, seed."""
    rows = [{schema.VARIANT_ID: v.variant_id, schema.KIND: v.kind, schema.PARAMS: v.params, schema.SEED: v.seed}
            for v in variants]
    return schema.VARIANTS.validate(pd.DataFrame(rows, columns=schema.VARIANTS.names), source="perturb")


def variants_from_table(table: pd.DataFrame, source: str = "variants table") -> list[Variant]:
    """Rebuild variants from their table, checking that each recorded id is what its params give today."""
    table = schema.VARIANTS.validate(table, source=source)
    out = []
    for vid, params in zip(table[schema.VARIANT_ID], table[schema.PARAMS]):
        variant = Variant.from_params(params)
        if variant.variant_id != vid:
            raise PerturbationError(f"{source}: variant {vid!r} rebuilds as {variant.variant_id!r}; "
                                    "its params do not describe it (edited, or written by another harmony version)")
        out.append(variant)
    return out


# -- designs ---------------------------------------------------------------------------------------------

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

    Chains are ordered image specs, then mask specs, then settings specs (see the module table). With
    ``base_params`` (pyradiomics parameters), a bin width or count equal to the base one is an identity.

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


# -- making the variants of a cohort ---------------------------------------------------------------------

#: Around a saved variant's mask, this many mm of image are written (the whole image with ``full_images``).
INSPECTION_MARGIN_MM = 30.0


def _inspection_crop(image: sitk.Image, mask: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    roi = sitk.GetArrayViewFromImage(mask) != 0
    lo, hi = ops.neighbourhood(roi, ops.pad_voxels(INSPECTION_MARGIN_MM, ops.Grid.of(image).spacing_zyx))
    (z0, y0, x0), (z1, y1, x1) = lo, hi + 1
    return image[int(x0):int(x1), int(y0):int(y1), int(z0):int(z1)], mask[int(x0):int(x1), int(y0):int(y1), int(z0):int(z1)]


def perturb_cases(cases: pd.DataFrame, variants: list[Variant], *, out_dir=None, save_images: bool = False,
                  full_images: bool = False, label: int = 1, progress: bool | None = None) -> pd.DataFrame:
    """Make every variant of every case (repeat 0) and return the failures table (schema.FAILURES).

    A variant that cannot be made for a case (an erosion past its guard, an emptied mask ...) is a row with
    the reason, not an exception. With ``save_images``, each made variant is written to
    ``out_dir/images/<case_id>/<variant_id>_image.nrrd`` and ``..._mask.nrrd``: the mask's neighbourhood
    (``INSPECTION_MARGIN_MM``), or the whole image with ``full_images``.
    """
    from pathlib import Path

    from harmony.cases import load_case_images

    if save_images and out_dir is None:
        raise ValueError("save_images needs out_dir")
    cases = schema.CASES.validate(cases, source="perturb")
    rows = []
    with progress_bar(total=len(cases) * len(variants), desc="perturb", unit="variant", progress=progress) as bar:
        for case in cases.to_dict("records"):
            case_id = case[schema.CASE_ID]
            image, mask = load_case_images(case)
            folder = Path(out_dir) / "images" / str(case_id) if save_images else None
            for variant, made, error in iter_variants(image, mask, variants, case_id=case_id, label=label):
                bar.update()
                if error is not None:
                    rows.append({schema.CASE_ID: case_id, schema.VARIANT_ID: variant.variant_id, schema.REPEAT: 0,
                                 schema.ERROR: str(error)})
                elif folder is not None:
                    out_image, out_mask = made if full_images else _inspection_crop(*made)
                    folder.mkdir(parents=True, exist_ok=True)
                    sitk.WriteImage(out_image, str(folder / f"{variant.variant_id}_image.nrrd"), True)
                    sitk.WriteImage(out_mask, str(folder / f"{variant.variant_id}_mask.nrrd"), True)
    return schema.FAILURES.validate(pd.DataFrame(rows, columns=schema.FAILURES.names), source="perturb")
