"""Time an IBSI-mode extraction against plain pyradiomics on the same case and settings.

Case: ``lung1`` (CT, 512x512x48, 0.57x0.57x5 mm) from the pyradiomics sample data in ``$HARMONY_REFERENCE_DATA``
(default ``../shared/data``). Settings: Original + LoG (sigma 1, 2, 3 mm) + Wavelet, every feature class,
binWidth 25, re-segmentation to [-1000, 400] HU, and resampling to 1 mm isotropic (linear). IBSI mode adds the
IBSI grid, the rounding, the ROI interpolation, the 3-sigma outlier window and the corrected outputs
(:mod:`harmony.extraction.ibsi`); plain mode is ``RadiomicsFeatureExtractor.execute`` with pyradiomics' own
resampling. Both crop to the ROI's box plus ``padDistance`` (5) voxels before filtering.

Each is timed as the best of three runs; the same pair is also timed without resampling. The last line is
machine-readable: ``ratio_no_resampling=<ibsi/plain> ratio_ibsi_over_plain=<ibsi/plain, with resampling>``
(target: at most 1.3).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import SimpleITK as sitk

from harmony.extraction.adapter import extract, make_extractor
from harmony.extraction.params import merge_params

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best_of  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HARMONY_REFERENCE_DATA", ROOT.parent / "shared" / "data")) / "pyradiomics_cases"
PLAIN = {"setting": {"binWidth": 25, "label": 1, "resegmentRange": [-1000, 400]},
         "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 2.0, 3.0]}, "Wavelet": {}}}
RESAMPLED = {"setting": {"resampledPixelSpacing": [1.0, 1.0, 1.0], "interpolator": "sitkLinear"}}
IBSI = {"ibsi": {"outlier_sigma": 3}}


def timed(image: sitk.Image, mask: sitk.Image, params: dict) -> tuple[float, int]:
    extractor = make_extractor(params)
    seconds, result = best_of(3, lambda: extract(image, mask, extractor))
    return seconds, len(result.features)


def main() -> int:
    image_path, mask_path = DATA / "lung1_image.nrrd", DATA / "lung1_label.nrrd"
    if not image_path.is_file():
        print(f"reference data not found: {image_path} (set HARMONY_REFERENCE_DATA)", file=sys.stderr)
        return 2
    image, mask = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
    ratios = {}
    for name, extra in (("no_resampling", {}), ("ibsi_over_plain", RESAMPLED)):
        plain = merge_params(PLAIN, extra)
        t_plain, n_plain = timed(image, mask, plain)
        t_ibsi, n_ibsi = timed(image, mask, merge_params(plain, IBSI))
        ratios[name] = t_ibsi / t_plain
        print(f"{'resampled to 1 mm' if extra else 'no resampling'}: plain {t_plain:.2f} s ({n_plain} features), "
              f"IBSI mode {t_ibsi:.2f} s ({n_ibsi} features)")
    print(" ".join(f"ratio_{name}={ratio:.3f}" for name, ratio in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
