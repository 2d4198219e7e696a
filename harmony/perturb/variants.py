"""Variants: chains of specs with a stable id, made for a case image by image."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
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

if TYPE_CHECKING:  # pandas is imported where it is used, so `harmony validate` does not load it
    import pandas as pd

__all__ = ["PYRADIOMICS_DEFAULT_BIN_WIDTH", "stable_int", "case_rng", "Variant", "iter_variants", "variants_table",
           "variants_from_table"]

#: pyradiomics' bin width when its settings give neither binWidth nor binCount.
PYRADIOMICS_DEFAULT_BIN_WIDTH = 25.0


def stable_int(text: str) -> int:
    """A 60-bit integer of ``text`` that is the same in every process (unlike :func:`hash`).

    Parameters
    ----------
    text : str
        Any text.

    Returns
    -------
    int
        In ``[0, 2**60)``.

    Examples
    --------
    >>> stable_int("lung1") == stable_int("lung1") < 2 ** 60
    True
    """
    return int(stable_hash(text, length=15), 16)


def case_rng(seed: int, case_id: str, repeat: int = 0) -> np.random.Generator:
    """The random stream of a stochastic spec for one case and repeat.

    A design's variant draws from this stream, so the same variant gives the same image for a case in every
    run, on every machine, whatever else is extracted.

    Parameters
    ----------
    seed : int
        The spec's seed (set when a design is expanded).
    case_id : str
        The case.
    repeat : int, default 0
        The repeat (independent draws of the same variant).

    Returns
    -------
    numpy.random.Generator

    Examples
    --------
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


@dataclass(frozen=True)
class Variant:
    """A chain of specs applied in order; identity specs are dropped. The empty chain is ``original``.

    Its ``variant_id`` is a hash of the chain, so equal chains are one variant in every run; stochastic
    specs draw from :func:`case_rng` with their own seed, the case and the repeat.

    Parameters
    ----------
    specs : tuple of Spec, default ()
        The chain, image specs before mask specs before settings specs (as :func:`expand_design` orders
        them).

    Raises
    ------
    PerturbationError
        ``specs`` holds something other than a spec.

    Examples
    --------
    >>> from harmony.perturb.specs import BinWidth, ErodeDilate, Noise
    >>> variant = Variant((Noise(level=5.0, seed=3), ErodeDilate(distance_mm=0), BinWidth(width=10)))
    >>> len(variant.specs), variant.kind, variant.seed
    (2, 'discretisation+noise', 3)
    >>> Variant().variant_id
    'original'
    >>> Variant.from_params(variant.params) == variant
    True
    """

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
        """``"original"`` for the empty chain, else a stable 16-hex-digit hash of the chain."""
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
        """Rebuild a variant from its ``params`` JSON (a recorded chain) for an exact replay.

        Parameters
        ----------
        params : str
            A variant's :attr:`params` (the ``params`` column of a variants table).

        Returns
        -------
        Variant

        Raises
        ------
        PerturbationError
            ``params`` is not a JSON list of spec dicts, or a spec does not rebuild.
        """
        try:
            chain = json.loads(params)
        except (TypeError, json.JSONDecodeError) as exc:
            raise PerturbationError(f"variant params are not JSON ({exc}): {params!r}") from None
        if not isinstance(chain, list):
            raise PerturbationError(f"variant params must be a JSON list of specs, got {params!r}")
        return cls(tuple(spec_from_dict(d) for d in chain))

    def apply_settings(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of the pyradiomics parameters with this chain's settings specs applied.

        Parameters
        ----------
        params : mapping
            The base pyradiomics parameters (not modified).

        Returns
        -------
        dict

        Examples
        --------
        >>> from harmony.perturb.specs import BinWidth
        >>> Variant((BinWidth(width=10),)).apply_settings({"setting": {"binCount": 16, "label": 1}})
        {'setting': {'label': 1, 'binWidth': 10.0}}
        """
        out = copy.deepcopy(dict(params))
        out["setting"] = dict(out.get("setting") or {})
        for spec in self.specs:
            if spec.target == "settings":
                out = spec.settings(out)
        return out

    def apply(self, image: sitk.Image, mask: sitk.Image, *, case_id: str, repeat: int = 0,
              label: int = 1) -> tuple[sitk.Image, sitk.Image]:
        """The perturbed ``(image, mask)`` of one case; the inputs are not modified.

        Parameters
        ----------
        image, mask : SimpleITK.Image
            The case's image and mask, on the same grid.
        case_id : str
            The case: with ``repeat``, it selects the random stream of each stochastic spec
            (:func:`case_rng`).
        repeat : int, default 0
            The repeat.
        label : int, default 1
            The ROI is ``mask == label``.

        Returns
        -------
        (SimpleITK.Image, SimpleITK.Image)
            A changed image is float32 (float64 stays float64), a changed mask is uint8 holding ``label`` in
            the ROI; what the chain does not change is returned as given.

        Raises
        ------
        PerturbationError
            Naming the case, the variant and the reason when it cannot be made.

        Examples
        --------
        >>> from harmony.perturb.specs import ErodeDilate
        >>> from harmony.phantoms import ibsi_digital_phantom
        >>> image, mask = ibsi_digital_phantom()
        >>> same, grown = Variant((ErodeDilate(distance_mm=2.0),)).apply(image, mask, case_id="ibsi")
        >>> same is image, grown.GetSize()
        (True, (5, 4, 4))
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
    them); each result equals ``variant.apply(...)`` bit for bit. A variant that cannot be made is yielded
    with its error instead of raising, so one bad variant does not stop the others.

    Parameters
    ----------
    image, mask : SimpleITK.Image
        The case's image and mask.
    variants : iterable of Variant
        The variants to make.
    case_id : str
        The case (selects the random streams, names the errors).
    repeat : int, default 0
        The repeat.
    label : int, default 1
        The ROI is ``mask == label``.

    Yields
    ------
    (Variant, (SimpleITK.Image, SimpleITK.Image) or None, PerturbationError or None)

    Examples
    --------
    >>> from harmony.perturb.specs import Volume
    >>> from harmony.phantoms import ibsi_digital_phantom
    >>> image, mask = ibsi_digital_phantom()
    >>> chains = [Variant(), Variant((Volume(fraction=0.001),))]
    >>> for variant, made, error in iter_variants(image, mask, chains, case_id="ibsi"):
    ...     print(variant.variant_id, made is not None, error)
    original True None
    81534eea8a0a61c0 False case 'ibsi', variant 81534eea8a0a61c0 (volume): volume fraction 0.001 of 74 voxels ...
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
    """One row per variant (schema.VARIANTS): variant_id, kind, params, seed.

    Parameters
    ----------
    variants : iterable of Variant
        E.g. from :func:`~harmony.perturb.design.expand_design`.

    Returns
    -------
    DataFrame
        The variants table (:data:`harmony.core.schema.VARIANTS`); :func:`variants_from_table` reads it back.

    Examples
    --------
    >>> from harmony.perturb.specs import Noise
    >>> variants_table([Variant(), Variant((Noise(level=1.0, seed=4),))])[["kind", "seed"]].to_dict("records")
    [{'kind': 'original', 'seed': 0}, {'kind': 'noise', 'seed': 4}]
    """
    import pandas as pd
    rows = [{schema.VARIANT_ID: v.variant_id, schema.KIND: v.kind, schema.PARAMS: v.params, schema.SEED: v.seed}
            for v in variants]
    return schema.VARIANTS.validate(pd.DataFrame(rows, columns=schema.VARIANTS.names), source="perturb")


def variants_from_table(table: pd.DataFrame, source: str = "variants table") -> list[Variant]:
    """Rebuild variants from their table, checking that each recorded id is what its params give today.

    Parameters
    ----------
    table : DataFrame
        A variants table (:func:`variants_table`, or a run's ``variants.parquet``).
    source : str, default "variants table"
        Where it came from, for the messages.

    Returns
    -------
    list of Variant

    Raises
    ------
    SchemaError
        The table does not follow :data:`harmony.core.schema.VARIANTS`.
    PerturbationError
        A row's params do not rebuild, or rebuild as another ``variant_id`` (edited, or written by another
        harmony version).

    Examples
    --------
    >>> from harmony.perturb.specs import Noise
    >>> variants = [Variant(), Variant((Noise(level=1.0, seed=4),))]
    >>> variants_from_table(variants_table(variants)) == variants
    True
    """
    table = schema.VARIANTS.validate(table, source=source)
    out = []
    for vid, params in zip(table[schema.VARIANT_ID], table[schema.PARAMS]):
        variant = Variant.from_params(params)
        if variant.variant_id != vid:
            raise PerturbationError(f"{source}: variant {vid!r} rebuilds as {variant.variant_id!r}; "
                                    "its params do not describe it (edited, or written by another harmony version)")
        out.append(variant)
    return out
