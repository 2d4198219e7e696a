"""Perturbation specs: frozen dataclasses with parameters in physical units, and how each is applied.

Each spec checks and normalises its parameters on construction (so equal specs have equal JSON and equal
variant ids) and applies itself to a ``_State`` (image array, grid, ROI) through the pure operations in
:mod:`harmony.perturb.ops`. :func:`apply` (and :meth:`Spec.apply`) applies a spec or a chain to an image and
its mask; :mod:`harmony.perturb.variants` and :mod:`harmony.perturb.design` chain them into the variants of a
study, with a recorded seed per case.

=============  ===========  ==============  ==========================================================
spec           kind         target          what it does
=============  ===========  ==============  ==========================================================
Noise          noise        image           additive Gaussian or Rician noise (random)
Intensity      intensity    image           ``scale * I + offset`` (calibration drift)
Resample       resample     image and mask  resample to a voxel size, optionally back
Rotate         rotate       image and mask  rotation about the mask's centroid
Translate      translate    image and mask  sub-voxel shift
ErodeDilate    erode_dilate mask            erosion or dilation by a distance in mm
Volume         volume       mask            grow or shrink the mask to a fraction of its volume
Contour        contour      mask            supervoxel contour randomisation (random)
BinWidth       bin_width    settings        pyradiomics ``binWidth``
BinCount       bin_count    settings        pyradiomics ``binCount``
=============  ===========  ==============  ==========================================================
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import SimpleITK as sitk

from harmony.core.files import canonical_json
from harmony.core.images import as_image
from harmony.perturb import ops
from harmony.perturb.ops import PerturbationError, estimate_noise

__all__ = ["FAMILIES", "TARGETS", "Spec", "Noise", "Intensity", "Resample", "Rotate", "Translate", "ErodeDilate",
           "Volume", "Contour", "BinWidth", "BinCount", "SPEC_TYPES", "spec_from_dict", "apply"]

#: The families a spec belongs to; a variant's ``kind`` joins its specs' families (``"mask+noise"``).
FAMILIES = ("noise", "resampling", "discretisation", "mask", "geometry", "calibration")
#: What a spec changes: the image, image and mask together, the mask, or the pyradiomics settings.
TARGETS = ("image", "image+mask", "mask", "settings")
_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


# -- parameters ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Param:
    """How one spec parameter is checked and normalised (so equal specs have equal JSON and ids)."""

    kind: str  # float, int, bool, str, vec3 (a number means the same on all axes), axis (vec3 or x/y/z), seed
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    choices: tuple | None = None
    doc: str = ""

    def normalise(self, value: Any) -> Any:
        """The canonical value, or ValueError with the reason."""
        if self.kind in ("vec3", "axis"):
            if self.kind == "axis" and isinstance(value, str):
                if value not in _AXES:
                    raise ValueError(f"must be one of {sorted(_AXES)} or a vector of 3 numbers")
                return _AXES[value]
            items = [value] * 3 if _is_number(value) and self.kind == "vec3" else value
            if not isinstance(items, (list, tuple)) or len(items) != 3 or not all(map(_is_number, items)):
                raise ValueError("expected a vector of 3 numbers" + (" or one number" if self.kind == "vec3" else ""))
            out = tuple(self._number(float(v)) for v in items)
            if self.kind == "axis" and not any(out):
                raise ValueError("the axis must not be the zero vector")
            return out
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if self.kind == "str":
            if value not in self.choices:
                raise ValueError(f"must be one of {list(self.choices)}")
            return value
        integral = self.kind in ("int", "seed")
        if not _is_number(value) or (integral and not isinstance(value, (int, np.integer))):
            raise ValueError("expected " + ("an integer" if integral else "a number"))
        return self._number(int(value) if integral else float(value))

    def _number(self, v):
        if not math.isfinite(v):
            raise ValueError("must be finite")
        if self.min is not None and (v < self.min or (self.min_exclusive and v == self.min)):
            raise ValueError(f"must be {'>' if self.min_exclusive else '>='} {self.min}")
        if self.max is not None and v > self.max:
            raise ValueError(f"must be <= {self.max}")
        return v

    @property
    def vector(self) -> bool:
        return self.kind in ("vec3", "axis")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _param(default: Any = dataclasses.MISSING, **kw) -> Any:
    return field(default=default, metadata={"param": _Param(**kw)})


_SEED = dict(kind="seed", min=0, max=2 ** 63 - 1, doc="seed of the per-case stream (set when a design is expanded)")
_INTERPOLATOR = dict(kind="str", choices=tuple(ops.INTERPOLATORS), doc="image interpolator")
_MARGIN = dict(kind="float", min=0.0, doc="mm around the ROI that is resampled; the rest keeps its values")


# -- specs -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _State:
    """A case during a chain: image array (float), its grid, the ROI, and which of them changed."""

    image: np.ndarray
    grid: ops.Grid
    roi: np.ndarray
    image_changed: bool = False
    mask_changed: bool = False

    def with_image(self, image: np.ndarray, roi: np.ndarray | None = None, grid: ops.Grid | None = None) -> _State:
        moved = roi is not None
        return _State(image, grid or self.grid, roi if moved else self.roi, True, self.mask_changed or moved)

    def with_roi(self, roi: np.ndarray) -> _State:
        return dataclasses.replace(self, roi=roi, mask_changed=True)


@dataclass(frozen=True)
class Spec:
    """Base of every perturbation spec. Subclasses set ``kind``, ``family``, ``target`` and ``stochastic``.

    A spec is a frozen dataclass whose fields are its parameters, checked and normalised on construction
    (vectors become tuples, numbers floats), so equal specs compare, hash and serialise equal.

    Attributes
    ----------
    kind : str
        The spec's name in designs and JSON (``"noise"``, ``"erode_dilate"``, ...).
    family : str
        One of :data:`FAMILIES`.
    target : str
        One of :data:`TARGETS`.
    stochastic : bool
        Whether applying it draws random numbers (then :func:`apply` needs ``rng``).

    Raises
    ------
    PerturbationError
        On construction, when a parameter is missing, of the wrong type or out of range.

    Examples
    --------
    >>> ErodeDilate(distance_mm=-1).to_dict()
    {'kind': 'erode_dilate', 'distance_mm': -1.0, 'max_volume_loss': 0.8}
    >>> Resample(spacing_mm=2) == Resample(spacing_mm=(2.0, 2.0, 2.0))
    True
    >>> Noise(level=-1)
    Traceback (most recent call last):
    ...
    harmony.perturb.ops.PerturbationError: noise.level: must be >= 0.0, got -1
    """

    kind: ClassVar[str] = ""
    family: ClassVar[str] = ""
    target: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                object.__setattr__(self, f.name, f.metadata["param"].normalise(value))
            except ValueError as exc:
                raise PerturbationError(f"{self.kind}.{f.name}: {exc}, got {value!r}") from None
        message = self._check()
        if message:
            raise PerturbationError(f"{self.kind}: {message}")

    def _check(self) -> str | None:
        return None

    @property
    def is_identity(self) -> bool:
        """True when this level changes nothing (noise 0, erosion 0 mm, rotation 0 degrees ...).

        A :class:`~harmony.perturb.variants.Variant` drops identity specs, so they never make a new variant.
        """
        return False

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., **params}`` with JSON types (vectors as lists).

        Returns
        -------
        dict
            What :func:`spec_from_dict` rebuilds the spec from.

        Examples
        --------
        >>> Translate(fraction=(0.5, 0, 0)).to_dict()["fraction"]
        [0.5, 0.0, 0.0]
        """
        return {"kind": self.kind, **{f.name: list(v) if isinstance(v, tuple) else v
                                      for f in fields(self) for v in [getattr(self, f.name)]}}

    def apply(self, image: sitk.Image | str | os.PathLike, mask: sitk.Image | str | os.PathLike, *,
              rng: np.random.Generator | None = None, label: int = 1) -> tuple[sitk.Image, sitk.Image]:
        """This spec applied to an image and its mask: ``apply(self, image, mask, rng=rng, label=label)``.

        Parameters
        ----------
        image, mask : SimpleITK.Image or path
            A 3D scalar image and its mask on the same grid.
        rng : numpy.random.Generator, optional
            Required for a stochastic spec (:class:`Noise`, :class:`Contour`).
        label : int, default 1
            The ROI is ``mask == label``.

        Returns
        -------
        (SimpleITK.Image, SimpleITK.Image)
            The perturbed image and mask (see :func:`apply`).

        Raises
        ------
        PerturbationError
            See :func:`apply`.

        Examples
        --------
        >>> from harmony.phantoms import ibsi_digital_phantom
        >>> image, mask = ibsi_digital_phantom()
        >>> scaled, _ = Intensity(scale=2.0).apply(image, mask)
        >>> float(sitk.GetArrayViewFromImage(scaled).max())
        18.0
        """
        return apply(self, image, mask, rng=rng, label=label)

    def apply_state(self, state: _State, rng: np.random.Generator | None) -> _State:  # pragma: no cover - abstract
        """Apply the spec to a case during a chain: the hook every image or mask spec implements.

        Parameters
        ----------
        state : _State
            The image array, its grid and the ROI so far.
        rng : numpy.random.Generator or None
            The draws of a stochastic spec; ``None`` for the others.

        Returns
        -------
        _State
            A new state (the input is not modified), flagged with what changed.

        Raises
        ------
        PerturbationError
            The spec cannot be made for this case (e.g. an erosion that removes too much of the mask).
        """
        raise NotImplementedError

    def settings(self, params: dict) -> dict:
        """Change pyradiomics parameters in place (settings specs only; the others return them as given).

        Parameters
        ----------
        params : dict
            pyradiomics parameters with a ``setting`` table.

        Returns
        -------
        dict
            ``params``.

        Examples
        --------
        >>> BinCount(count=32).settings({"setting": {"binWidth": 25}})
        {'setting': {'binWidth': 25, 'binCount': 32}}
        """
        return params


@dataclass(frozen=True)
class Noise(Spec):
    """Additive noise of standard deviation ``level`` (Gaussian noise adds variance ``level**2``).

    Stochastic: :func:`apply` needs ``rng``.

    Parameters
    ----------
    level : float
        Noise standard deviation, >= 0: in image units, or with ``relative`` a multiple of the image's own
        noise. 0 is the identity.
    relative : bool, default False
        Read ``level`` as a multiple of the image's own noise, estimated by
        :func:`~harmony.perturb.ops.estimate_noise` (MAD of Immerkaer's residual) in the ROI's
        neighbourhood; ``level=1`` then adds as much noise again as the image has.
    distribution : {"gaussian", "rician"}, default "gaussian"
        ``rician`` noise is ``sqrt((I + n1)**2 + n2**2)`` (the magnitude of complex Gaussian noise, both
        parts of SD ``level``), for magnitude (MR) images, which must be >= 0; it adds ``level**2`` only at
        high SNR.
    seed : int, default 0
        The per-case stream of a design's variant (:func:`~harmony.perturb.variants.case_rng`); set when a
        design is expanded, unused by :func:`apply`, which takes ``rng``.

    Examples
    --------
    >>> from harmony.phantoms import ibsi_digital_phantom
    >>> image, mask = ibsi_digital_phantom()
    >>> noisy, _ = Noise(level=2.0).apply(image, mask, rng=np.random.default_rng(0))
    >>> diff = sitk.GetArrayViewFromImage(noisy) - sitk.GetArrayViewFromImage(image)
    >>> bool(1.5 < diff.std() < 2.5)
    True
    """

    kind: ClassVar[str] = "noise"
    family: ClassVar[str] = "noise"
    target: ClassVar[str] = "image"
    stochastic: ClassVar[bool] = True
    level: float = _param(kind="float", min=0.0, doc="noise standard deviation (image units, or x image noise)")
    relative: bool = _param(False, kind="bool", doc="level is a multiple of the image's estimated noise")
    distribution: str = _param("gaussian", kind="str", choices=("gaussian", "rician"))
    seed: int = _param(0, **_SEED)

    @property
    def is_identity(self) -> bool:
        return self.level == 0

    def apply_state(self, state: _State, rng: np.random.Generator | None) -> _State:
        image = state.image
        sigma = self.level
        if self.relative:
            own = estimate_noise(image, state.roi, state.grid.spacing_zyx)
            if own <= 0:
                raise PerturbationError("the image's noise estimate is 0 (a noise-free image); give an absolute level")
            sigma *= own
        sigma = image.dtype.type(sigma)
        if self.distribution == "gaussian":
            return state.with_image(image + sigma * rng.standard_normal(image.shape, dtype=image.dtype))
        if image.min() < 0:
            raise PerturbationError(f"Rician noise needs a magnitude image (>= 0); this one has minimum {image.min()}")
        real = image + sigma * rng.standard_normal(image.shape, dtype=image.dtype)
        return state.with_image(np.hypot(real, sigma * rng.standard_normal(image.shape, dtype=image.dtype)))


@dataclass(frozen=True)
class Intensity(Spec):
    """Calibration drift: ``scale * I + offset``.

    Parameters
    ----------
    scale : float, default 1.0
        Multiplies the intensities; > 0.
    offset : float, default 0.0
        Added after scaling, in image intensity units (e.g. HU).

    Examples
    --------
    >>> Intensity(scale=1.0, offset=0.0).is_identity, Intensity(offset=-20).to_dict()
    (True, {'kind': 'intensity', 'scale': 1.0, 'offset': -20.0})
    """

    kind: ClassVar[str] = "intensity"
    family: ClassVar[str] = "calibration"
    target: ClassVar[str] = "image"
    scale: float = _param(1.0, kind="float", min=0.0, min_exclusive=True)
    offset: float = _param(0.0, kind="float", doc="image intensity units (e.g. HU)")

    @property
    def is_identity(self) -> bool:
        return self.scale == 1 and self.offset == 0

    def apply_state(self, state: _State, rng: np.random.Generator | None) -> _State:
        t = state.image.dtype.type
        return state.with_image(state.image * t(self.scale) + t(self.offset))


@dataclass(frozen=True)
class Resample(Spec):
    """Resample to ``spacing_mm`` (x, y, z; one number for isotropic), optionally back onto the original grid.

    Only the ROI's neighbourhood (its box grown by ``margin_mm``) is resampled
    (:func:`~harmony.perturb.ops.resample`).

    Parameters
    ----------
    spacing_mm : float or (float, float, float)
        The new voxel size (mm), > 0.
    interpolator : {"linear", "bspline"}, default "linear"
        The image interpolator.
    mask_rule : {"linear", "nearest"}, default "linear"
        The mask: linear interpolation thresholded at 0.5, or nearest neighbour.
    back_to_original : bool, default False
        Resample again onto the original grid and paste the neighbourhood into the full image (a
        resolution loss at the original geometry); otherwise the result is the neighbourhood on the new
        grid, as pyradiomics' own resampling gives.
    margin_mm : float, default 30.0
        mm around the ROI that are resampled.

    Examples
    --------
    >>> from harmony.phantoms import ibsi_digital_phantom
    >>> image, mask = ibsi_digital_phantom()
    >>> fine, fine_mask = Resample(spacing_mm=1.0).apply(image, mask)
    >>> fine.GetSize(), fine.GetSpacing()
    ((10, 8, 8), (1.0, 1.0, 1.0))
    >>> Resample(spacing_mm=1.0, back_to_original=True).apply(image, mask)[0].GetSize()
    (5, 4, 4)
    """

    kind: ClassVar[str] = "resample"
    family: ClassVar[str] = "resampling"
    target: ClassVar[str] = "image+mask"
    spacing_mm: tuple = _param(kind="vec3", min=0.0, min_exclusive=True)
    interpolator: str = _param("linear", **_INTERPOLATOR)
    mask_rule: str = _param("linear", kind="str", choices=("nearest", "linear"),
                            doc="nearest neighbour, or linear then threshold 0.5")
    back_to_original: bool = _param(False, kind="bool")
    margin_mm: float = _param(30.0, **_MARGIN)

    def apply_state(self, state: _State, rng: np.random.Generator | None) -> _State:
        image, roi, grid = ops.resample(state.image, state.roi, state.grid, self.spacing_mm,
                                        interpolator=self.interpolator, mask_rule=self.mask_rule,
                                        margin_mm=self.margin_mm, back=self.back_to_original)
        return state.with_image(image, roi, grid)


@dataclass(frozen=True)
class Rotate(Spec):
    """Rotate image and mask by ``angle_deg`` about ``axis`` through the mask's centroid.

    Positive angles turn counter-clockwise looking down the axis. Only the ROI's neighbourhood is
    resampled (:func:`~harmony.perturb.ops.warp`); the mask is interpolated linearly and thresholded at 0.5.

    Parameters
    ----------
    angle_deg : float
        The angle (degrees); 0 is the identity.
    axis : {"x", "y", "z"} or (float, float, float), default "z"
        The rotation axis, along the image's axes.
    interpolator : {"linear", "bspline"}, default "linear"
        The image interpolator.
    margin_mm : float, default 30.0
        mm around the ROI (before and after the move) that are resampled.

    Examples
    --------
    >>> Rotate(angle_deg=15, axis="x").axis
    (1.0, 0.0, 0.0)
    """

    kind: ClassVar[str] = "rotate"
    family: ClassVar[str] = "geometry"
    target: ClassVar[str] = "image+mask"
    angle_deg: float = _param(kind="float")
    axis: tuple = _param("z", kind="axis")
    interpolator: str = _param("linear", **_INTERPOLATOR)
    margin_mm: float = _param(30.0, **_MARGIN)

    @property
    def is_identity(self) -> bool:
        return self.angle_deg == 0

    def apply_state(self, state: _State, rng: np.random.Generator | None) -> _State:
        grid = state.grid
        axis = grid.direction @ np.asarray(self.axis)
        axis = axis / np.linalg.norm(axis)
        # a component below 1e-12 turns nothing, but a subnormal one makes SimpleITK's inverse transform NaN
        axis[np.abs(axis) < 1e-12] = 0.0
        centre = grid.physical(np.mean(np.nonzero(state.roi), axis=1))[0]
        # SimpleITK maps output points to input points: the content turns by +angle when points turn by -angle.
        transform = sitk.VersorRigid3DTransform()
        transform.SetCenter(tuple(map(float, centre)))
        transform.SetRotation(tuple(map(float, axis)), -math.radians(self.angle_deg))
        image, roi = ops.warp(state.image, state.roi, grid, transform, interpolator=self.interpolator,
                              margin_mm=self.margin_mm)
        return state.with_image(image, roi)


@dataclass(frozen=True)
class Translate(Spec):
    """Shift image and mask by ``fraction`` of a voxel along each image axis (x, y, z), each in [-1, 1].

    Parameters
    ----------
    fraction : float or (float, float, float)
        The shift along x, y, z in voxels, each in [-1, 1]; one number shifts along all three.
    interpolator : {"linear", "bspline"}, default "linear"
        The image interpolator.
    margin_mm : float, default 30.0
        mm around the ROI (before and after the move) that are resampled.

    Examples
    --------
    >>> Translate(fraction=0.5).fraction, Translate(fraction=0).is_identity
    ((0.5, 0.5, 0.5), True)
    """

    kind: ClassVar[str] = "translate"
    family: ClassVar[str] = "geometry"
    target: ClassVar[str] = "image+mask"
    fraction: tuple = _param(kind="vec3", min=-1.0, max=1.0)
    interpolator: str = _param("linear", **_INTERPOLATOR)
    margin_mm: float = _param(30.0, **_MARGIN)

    @property
    def is_identity(self) -> bool:
        return not any(self.fraction)

    def apply_state(self, state: _State, rng: np.random.Generator | None) -> _State:
        grid = state.grid
        shift = grid.direction @ (np.asarray(self.fraction) * grid.spacing)
        transform = sitk.TranslationTransform(3, tuple(map(float, -shift)))
        image, roi = ops.warp(state.image, state.roi, grid, transform, interpolator=self.interpolator,
                              margin_mm=self.margin_mm)
        return state.with_image(image, roi)


@dataclass(frozen=True)
class ErodeDilate(Spec):
    """Erode (``distance_mm`` < 0) or dilate (> 0) the mask by a Euclidean ball in mm.

    Distances are physical: anisotropic voxels are handled by the distance transform's sampling.

    Parameters
    ----------
    distance_mm : float
        < 0 erodes, > 0 dilates, 0 is the identity.
    max_volume_loss : float, default 0.8
        An erosion that removes more than this fraction of the mask fails (:class:`PerturbationError`)
        instead of being made.

    Examples
    --------
    >>> from harmony.phantoms import ibsi_digital_phantom
    >>> image, mask = ibsi_digital_phantom()
    >>> _, grown = ErodeDilate(distance_mm=2.0).apply(image, mask)
    >>> int(sitk.GetArrayViewFromImage(mask).sum()), int(sitk.GetArrayViewFromImage(grown).sum())
    (74, 80)
    """

    kind: ClassVar[str] = "erode_dilate"
    family: ClassVar[str] = "mask"
    target: ClassVar[str] = "mask"
    distance_mm: float = _param(kind="float", doc="< 0 erodes, > 0 dilates")
    max_volume_loss: float = _param(0.8, kind="float", min=0.0, max=1.0, min_exclusive=True)

    @property
    def is_identity(self) -> bool:
        return self.distance_mm == 0

    def apply_state(self, state: _State, rng: np.random.Generator | None) -> _State:
        spacing = state.grid.spacing_zyx
        if self.distance_mm > 0:
            return state.with_roi(ops.dilate(state.roi, spacing, self.distance_mm))
        roi = ops.erode(state.roi, spacing, -self.distance_mm)
        loss = 1.0 - roi.sum() / state.roi.sum()
        if loss > self.max_volume_loss:
            raise PerturbationError(f"erosion by {-self.distance_mm:g} mm removes {loss:.1%} of the mask "
                                    f"({int(state.roi.sum())} -> {int(roi.sum())} voxels), more than "
                                    f"max_volume_loss {self.max_volume_loss:.0%}")
        return state.with_roi(roi)


@dataclass(frozen=True)
class Volume(Spec):
    """Grow or shrink the mask to ``fraction`` of its volume along its signed distance map.

    See :func:`~harmony.perturb.ops.adapt_volume`: the voxel count becomes exactly
    ``round(fraction * voxels)``.

    Parameters
    ----------
    fraction : float
        The new volume as a fraction of the old, > 0; 1 is the identity.

    Examples
    --------
    >>> from harmony.phantoms import ibsi_digital_phantom
    >>> image, mask = ibsi_digital_phantom()
    >>> _, half = Volume(fraction=0.5).apply(image, mask)
    >>> int(sitk.GetArrayViewFromImage(half).sum())
    37
    """

    kind: ClassVar[str] = "volume"
    family: ClassVar[str] = "mask"
    target: ClassVar[str] = "mask"
    fraction: float = _param(kind="float", min=0.0, min_exclusive=True)

    @property
    def is_identity(self) -> bool:
        return self.fraction == 1

    def apply_state(self, state: _State, rng: np.random.Generator | None) -> _State:
        return state.with_roi(ops.adapt_volume(state.roi, state.grid.spacing_zyx, self.fraction))


@dataclass(frozen=True)
class Contour(Spec):
    """Supervoxel contour randomisation (Zwanenburg et al., Sci Rep 2019).

    The ROI is re-delineated from SLIC supervoxels of its neighbourhood
    (:func:`~harmony.perturb.ops.randomise_contour`). Stochastic: :func:`apply` needs ``rng``.

    Parameters
    ----------
    supervoxel_mm3 : float, default 125.0
        Approximate supervoxel volume. mirp uses about 500 mm^3; 125 mm^3 (a 5 mm cube) also suits
        lesions of a few cm^3.
    compactness : float, default 0.05
        SLIC compactness, on intensities scaled to [0, 1] over the ROI's range.
    keep_above : float, default 0.9
        A supervoxel overlapping the ROI at least this much is always kept (mirp's value).
    drop_below : float, default 0.2
        One overlapping less is always dropped (mirp's value); in between, kept with probability equal to
        its overlap. Must be below ``keep_above``.
    closing_mm : float, default 2.0
        Radius of the closing applied to the union.
    margin_mm : float, default 10.0
        mm around the ROI that are segmented.
    seed : int, default 0
        The per-case stream of a design's variant; unused by :func:`apply`, which takes ``rng``.

    Examples
    --------
    >>> Contour(drop_below=0.5, keep_above=0.5)
    Traceback (most recent call last):
    ...
    harmony.perturb.ops.PerturbationError: contour: drop_below (0.5) must be < keep_above (0.5)
    """

    kind: ClassVar[str] = "contour"
    family: ClassVar[str] = "mask"
    target: ClassVar[str] = "mask"
    stochastic: ClassVar[bool] = True
    supervoxel_mm3: float = _param(125.0, kind="float", min=0.0, min_exclusive=True)
    compactness: float = _param(0.05, kind="float", min=0.0, min_exclusive=True,
                                doc="SLIC compactness on intensities scaled to [0, 1] over the ROI's range")
    keep_above: float = _param(0.9, kind="float", min=0.5, max=1.0, doc="overlap at which a supervoxel is kept")
    drop_below: float = _param(0.2, kind="float", min=0.0, max=0.5, doc="overlap below which it is dropped")
    closing_mm: float = _param(2.0, kind="float", min=0.0)
    margin_mm: float = _param(10.0, kind="float", min=0.0, doc="mm around the ROI that is segmented")
    seed: int = _param(0, **_SEED)

    def _check(self) -> str | None:
        if self.drop_below >= self.keep_above:
            return f"drop_below ({self.drop_below}) must be < keep_above ({self.keep_above})"
        return None

    def apply_state(self, state: _State, rng: np.random.Generator | None) -> _State:
        roi = ops.randomise_contour(state.image, state.roi, state.grid.spacing_zyx, rng,
                                    supervoxel_mm3=self.supervoxel_mm3, compactness=self.compactness,
                                    keep_above=self.keep_above, drop_below=self.drop_below,
                                    closing_mm=self.closing_mm, margin_mm=self.margin_mm)
        return state.with_roi(roi)


@dataclass(frozen=True)
class BinWidth(Spec):
    """pyradiomics ``binWidth`` (and no ``binCount``): a settings spec, which changes no voxel.

    Parameters
    ----------
    width : float
        The bin width, in image intensity units; > 0.

    Examples
    --------
    >>> BinWidth(width=10).settings({"setting": {"binCount": 32}})
    {'setting': {'binWidth': 10.0}}
    """

    kind: ClassVar[str] = "bin_width"
    family: ClassVar[str] = "discretisation"
    target: ClassVar[str] = "settings"
    width: float = _param(kind="float", min=0.0, min_exclusive=True)

    def settings(self, params: dict) -> dict:
        params["setting"].pop("binCount", None)
        params["setting"]["binWidth"] = self.width
        return params


@dataclass(frozen=True)
class BinCount(Spec):
    """pyradiomics ``binCount`` (which takes precedence over ``binWidth``): a settings spec.

    Parameters
    ----------
    count : int
        The number of bins, >= 1.

    Examples
    --------
    >>> BinCount(count=64).to_dict()
    {'kind': 'bin_count', 'count': 64}
    """

    kind: ClassVar[str] = "bin_count"
    family: ClassVar[str] = "discretisation"
    target: ClassVar[str] = "settings"
    count: int = _param(kind="int", min=1)

    def settings(self, params: dict) -> dict:
        params["setting"]["binCount"] = self.count
        return params


#: Every spec class by kind, in the order chains expanded from a design apply them.
SPEC_TYPES: dict[str, type[Spec]] = {cls.kind: cls for cls in (
    Rotate, Translate, Intensity, Noise, Resample, Volume, ErodeDilate, Contour, BinWidth, BinCount)}


_GROUP = {"image": 0, "image+mask": 0, "mask": 1, "settings": 2}


def spec_from_dict(d: Mapping[str, Any]) -> Spec:
    """Rebuild a spec from :meth:`Spec.to_dict`'s output; unknown kinds or keys raise PerturbationError.

    Parameters
    ----------
    d : mapping
        ``{"kind": ..., **params}``.

    Returns
    -------
    Spec

    Raises
    ------
    PerturbationError
        Unknown kind, unknown or missing parameter, or a bad value.

    Examples
    --------
    >>> spec_from_dict({"kind": "noise", "level": 5})
    Noise(level=5.0, relative=False, distribution='gaussian', seed=0)
    >>> spec_from_dict({"kind": "blur"})
    Traceback (most recent call last):
    ...
    harmony.perturb.ops.PerturbationError: unknown perturbation kind 'blur' (known: rotate, translate, ...)
    """
    if not isinstance(d, Mapping) or d.get("kind") not in SPEC_TYPES:
        got = d.get("kind") if isinstance(d, Mapping) else d
        raise PerturbationError(f"unknown perturbation kind {got!r} (known: {', '.join(SPEC_TYPES)})")
    cls = SPEC_TYPES[d["kind"]]
    params = {k: v for k, v in d.items() if k != "kind"}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise PerturbationError(f"{cls.kind}: unknown parameter(s) {unknown} (known: {', '.join(sorted(known))})")
    try:
        return cls(**params)
    except TypeError as exc:  # a required parameter is missing
        raise PerturbationError(f"{cls.kind}: {exc}") from None


# -- applying specs to images ------------------------------------------------------------------------

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


def apply(specs: Spec | Iterable[Spec], image: sitk.Image | str | os.PathLike, mask: sitk.Image | str | os.PathLike,
          *, rng: np.random.Generator | None = None, label: int = 1) -> tuple[sitk.Image, sitk.Image]:
    """Apply one spec, or a chain of specs in order, to an image and its mask; the inputs are not modified.

    Parameters
    ----------
    specs : Spec or iterable of Spec
        What to apply, e.g. ``Noise(level=5.0)`` or ``[Resample(spacing_mm=(2, 2, 2)), ErodeDilate(distance_mm=-1)]``.
        Settings specs (``BinWidth``, ``BinCount``) change no voxel: apply them to pyradiomics parameters with
        :meth:`harmony.perturb.Variant.apply_settings`.
    image, mask : SimpleITK.Image or path
        A 3D scalar image and its mask on the same grid (paths are read with SimpleITK).
    rng : numpy.random.Generator, optional
        The draws of the stochastic specs (noise, contour randomisation); required when the chain has one.
        The same generator state gives the same result bit for bit.
    label : int, default 1
        The ROI is ``mask == label``.

    Returns
    -------
    (SimpleITK.Image, SimpleITK.Image)
        The perturbed image (float32, or float64 when the input is) and mask (uint8 holding ``label`` in the
        ROI); what the chain does not change is returned as given.

    Raises
    ------
    PerturbationError
        ``specs`` holds something other than a spec; the chain is random and ``rng`` is missing; the image
        is not 3D scalar or the mask is not on its grid or lacks ``label``; a spec cannot be made (an
        erosion past ``max_volume_loss``) or empties the mask.
    CaseError
        A path that does not exist or cannot be read.

    Examples
    --------
    >>> import numpy as np
    >>> from harmony.phantoms import ibsi_digital_phantom
    >>> image, mask = ibsi_digital_phantom()
    >>> noisy, same_mask = apply(Noise(level=0.5), image, mask, rng=np.random.default_rng(0))
    >>> same_mask is mask, noisy.GetSize() == image.GetSize()
    (True, True)
    >>> _, grown = Resample(spacing_mm=(1.0, 1.0, 1.0)).apply(image, mask)
    >>> grown.GetSize()
    (10, 8, 8)

    A chain is applied in order, drawing from one generator:

    >>> chain = [Noise(level=0.5), ErodeDilate(distance_mm=2.0)]
    >>> a, a_mask = apply(chain, image, mask, rng=np.random.default_rng(1))
    >>> b, b_mask = apply(chain, image, mask, rng=np.random.default_rng(1))
    >>> bool((sitk.GetArrayViewFromImage(a) == sitk.GetArrayViewFromImage(b)).all())
    True
    >>> apply(Noise(level=0.5), image, mask)
    Traceback (most recent call last):
    ...
    harmony.perturb.ops.PerturbationError: noise is random: pass rng=numpy.random.default_rng(seed)
    """
    chain = [specs] if isinstance(specs, Spec) else list(specs)
    bad = [s for s in chain if not isinstance(s, Spec)]
    if bad:
        raise PerturbationError(f"specs must be perturbation specs (Noise, Resample, ...), got {bad[0]!r}")
    random = [s.kind for s in chain if s.stochastic]
    if random and rng is None:
        raise PerturbationError(f"{random[0]} is random: pass rng=numpy.random.default_rng(seed)")
    image, mask = as_image(image, "image"), as_image(mask, "mask")
    state = _start(image, mask, case_id="<apply>", label=label)
    for spec in chain:
        if spec.target == "settings":
            continue
        state = spec.apply_state(state, rng if spec.stochastic else None)
        if not state.roi.any():
            raise PerturbationError(f"the mask is empty after {spec.kind} {canonical_json(spec.to_dict())}")
    return _finish(state, image, mask, label)
