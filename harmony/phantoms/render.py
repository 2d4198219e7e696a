"""Rendering one procedural lesion phantom (grid, lesion shape and texture, background) from a validated spec."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from harmony.core.errors import ConfigError
from harmony.phantoms import textures
from harmony.phantoms.specs import phantom_spec

__all__ = ["render_phantom"]


def _geometry(grid: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(size, spacing, origin, direction matrix) of a grid spec, all in x, y, z order."""
    size = np.asarray(grid["size"], dtype=int)
    spacing = np.asarray(grid["spacing_mm"], dtype=float)
    direction = np.asarray(grid["direction"], dtype=float).reshape(3, 3) if grid["direction"] else np.eye(3)
    origin = (np.asarray(grid["origin_mm"], dtype=float) if grid["origin_mm"]
              else -direction @ ((size - 1) * spacing / 2))
    return size, spacing, origin, direction


def _set_geometry(image: sitk.Image, spacing, origin, direction) -> sitk.Image:
    image.SetSpacing([float(v) for v in spacing])
    image.SetOrigin([float(v) for v in origin])
    image.SetDirection([float(v) for v in np.ravel(direction)])
    return image


def _physical_points(spacing, origin, direction, lo, hi) -> np.ndarray:
    """Physical (x, y, z) of the voxel centres with index ``lo <= (i, j, k) < hi``, shape ``(3, nz, ny, nx)``."""
    axes = [np.arange(a, b) * d for a, b, d in zip(lo, hi, spacing)]
    kz, jy, ix = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return np.einsum("ij,j...->i...", direction, np.stack([ix, jy, kz])) + np.asarray(origin)[:, None, None, None]


def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _spread_directions(n: int) -> np.ndarray:
    """``n`` unit vectors spread evenly over the sphere (a Fibonacci lattice); ``n = 1`` gives one."""
    z = 1 - (2 * np.arange(n) + 1) / n
    azimuth = np.pi * (3 - math.sqrt(5)) * np.arange(n)
    ring = np.sqrt(1 - z * z)
    return np.stack([ring * np.cos(azimuth), ring * np.sin(azimuth), z], axis=1)


def _draw_shape(lesion: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The random details of a lesion's outline: orientation, lobe and spike directions, component centres."""
    n = lesion["components"]
    shape = {
        "rotation": _random_rotation(rng) if lesion["orientation"] == "random" else np.eye(3),
        "lobes": _unit_vectors(rng, lesion["lobes"]),
        "spikes": _unit_vectors(rng, lesion["spikes"]),
        "spike_owner": rng.integers(n, size=lesion["spikes"]),
    }
    spread = _spread_directions(n) @ _random_rotation(rng).T
    shape["centres"] = np.asarray(lesion["center_mm"]) + spread * (lesion["component_distance_mm"] if n > 1 else 0.0)
    shape["radius"] = lesion["radius_mm"] / n ** (1 / 3)  # equal total volume, before overlap, lobes and spikes
    # a ball around center_mm that holds the whole lesion (lobes can at most add lobulation * lobes)
    reach = shape["radius"] * max(lesion["axes"]) * (1 + lesion["lobulation"] * lesion["lobes"])
    shape["extent"] = (lesion["component_distance_mm"] * (n > 1) + reach
                       + lesion["spike_length_mm"] * (lesion["spikes"] > 0) + 1.0)
    return shape


def _lesion_masks(points: np.ndarray, lesion: Mapping[str, Any], shape: Mapping[str, Any]):
    """Boolean (lesion, necrotic core) arrays at ``points`` ``(3, ...)`` for a drawn shape."""
    rotation, axes, radius = shape["rotation"], np.asarray(lesion["axes"]), shape["radius"]
    width = lesion["lobe_width"]
    mean_bump = width / 2 * (1 - math.exp(-2 / width))  # mean of exp((cos - 1) / width) over the sphere
    core_scale = lesion["necrosis_fraction"] ** (1 / 3)
    length, half_width = lesion["spike_length_mm"], lesion["spike_width_mm"] / 2
    body = np.zeros(points.shape[1:], dtype=bool)
    core = np.zeros_like(body)
    for k, centre in enumerate(shape["centres"]):
        rel = points - centre[:, None, None, None]
        q = np.einsum("ji,j...->i...", rotation, rel) / axes[:, None, None, None]  # body frame, unit sphere
        r = np.sqrt(np.sum(q * q, axis=0))
        reach = np.full_like(r, radius)
        if len(shape["lobes"]) and lesion["lobulation"]:
            u = q / np.maximum(r, 1e-9)
            bumps = sum(np.exp((np.einsum("i,i...->...", d, u) - 1) / width) for d in shape["lobes"])
            reach *= np.maximum(1 + lesion["lobulation"] * (bumps - len(shape["lobes"]) * mean_bump), 0.1)
        body |= r <= reach
        if core_scale:
            core |= r <= reach * core_scale
        for d in shape["spikes"][shape["spike_owner"] == k]:
            surface = radius / np.linalg.norm(rotation.T @ d / axes)  # ellipsoid radius along d
            t = np.einsum("i,i...->...", d, rel)
            perp2 = np.sum(rel * rel, axis=0) - t * t
            taper = np.clip((surface + length - t) / max(length, 1e-9), 0.0, 1.0)
            body |= (t > 0) & (t <= surface + length) & (perp2 <= (half_width * taper) ** 2)
    return body, core


def render_phantom(spec: Mapping[str, Any], seed: int | Sequence[int]) -> tuple[sitk.Image, sitk.Image]:
    """Render a phantom spec (:data:`PHANTOM`, defaults filled in) as (float32 image, uint8 mask).

    A pure function of ``(spec, seed)``: the shape, the lesion texture, the background texture and the
    regions/gradient draw from four independent streams spawned from ``SeedSequence(seed)``, so changing the
    texture parameters does not move the lesion's outline.

    Parameters
    ----------
    spec : mapping
        A phantom spec (validated here with :func:`phantom_spec`; absent keys take their defaults).
    seed : int or sequence of int
        The entropy of every draw.

    Returns
    -------
    (SimpleITK.Image, SimpleITK.Image)
        The image (float32) and the lesion's mask (uint8, label 1, necrotic core included), on the grid of
        ``spec["grid"]``.

    Raises
    ------
    ConfigError
        ``spec`` does not validate, or the lesion has no voxel on the grid. A lesion that touches the
        grid's border is cut, with a warning.

    Examples
    --------
    >>> image, mask = render_phantom({"grid": {"size": [24, 24, 24]}, "lesion": {"radius_mm": 6}}, seed=1)
    >>> image.GetSize(), image.GetOrigin(), int(sitk.GetArrayViewFromImage(mask).sum())
    ((24, 24, 24), (-11.5, -11.5, -11.5), 912)
    """
    spec = phantom_spec(spec)
    size, spacing, origin, direction = _geometry(spec["grid"])
    shape_rng, lesion_rng, background_rng, region_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    lesion, background = spec["lesion"], spec["background"]
    shape = _draw_shape(lesion, shape_rng)
    # evaluate the outline only in the index box around the lesion's bounding ball (direction is orthonormal)
    centre_index = direction.T @ (np.asarray(lesion["center_mm"]) - origin) / spacing
    lo = np.clip(np.floor(centre_index - shape["extent"] / spacing), 0, size).astype(int)
    hi = np.clip(np.ceil(centre_index + shape["extent"] / spacing) + 1, 0, size).astype(int)
    box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    points = _physical_points(spacing, origin, direction, lo, hi)
    body, core = (np.zeros(tuple(size[::-1]), dtype=bool) for _ in range(2))
    body[box], core[box] = _lesion_masks(points, lesion, shape)
    if not body.any():
        raise ConfigError(f"phantom: the lesion (center_mm={lesion['center_mm']}, radius_mm={lesion['radius_mm']}) "
                          "has no voxel on the grid")
    if body[[0, -1]].any() or body[:, [0, -1]].any() or body[:, :, [0, -1]].any():
        warnings.warn("phantom: the lesion touches the grid border and is cut", stacklevel=2)
    grid_shape, grid_spacing = body.shape, spacing[::-1]
    values = background["intensity"] + background["heterogeneity"] * textures.gaussian_random_field(
        grid_shape, grid_spacing, background["coarseness_mm"], background_rng)
    texture = textures.gaussian_random_field(grid_shape, grid_spacing, lesion["coarseness_mm"], lesion_rng)
    viable = lesion["intensity"] + lesion["heterogeneity"] * texture
    centre = lesion["center_mm"]
    if lesion["regions"] and lesion["region_contrast"]:
        viable[box] += lesion["region_contrast"] * textures.piecewise_regions(
            points, centre, lesion["radius_mm"], lesion["regions"], region_rng)
    if lesion["gradient"]:
        viable[box] += lesion["gradient"] * textures.linear_gradient(points, centre, lesion["radius_mm"], region_rng)
    values = np.where(body, viable, values)
    values = np.where(core, lesion["necrosis_intensity"] + lesion["necrosis_heterogeneity"] * texture, values)
    image = _set_geometry(sitk.GetImageFromArray(values.astype(np.float32)), spacing, origin, direction)
    mask = _set_geometry(sitk.GetImageFromArray(body.astype(np.uint8)), spacing, origin, direction)
    return image, mask
