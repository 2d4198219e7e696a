"""Variants: chains of specs with a stable id, made for a case image by image."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from harmony.core import schema
from harmony.core.files import canonical_json, stable_hash
from harmony.perturb.ops import PerturbationError
from harmony.perturb.specs import (
    BinCount,
    BinWidth,
    Spec,
    _finish,
    _start,
    _State,
    spec_from_dict,
)

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
                state = spec.apply_state(state, rng)
            except PerturbationError as exc:
                raise PerturbationError(f"case {case_id!r}, variant {self.variant_id} ({spec.kind}): {exc}") from None
            if not state.roi.any():
                raise PerturbationError(f"case {case_id!r}, variant {self.variant_id}: the mask is empty after "
                                        f"{spec.kind} {canonical_json(spec.to_dict())}")
        return state


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
