"""DICOM in: image series, RTSTRUCT and SEG masks converted to cached volumes; a DICOM tree scanned into cases.

pydicom (the ``dicom`` extra) is imported inside the functions that read files, so importing this package
stays light. One module per job: reading a series (series), rasterising an RTSTRUCT ROI (rtstruct), placing
a SEG segment (seg), the cache of converted volumes (cache), converting a cases table's DICOM rows
(convert), scanning a DICOM tree into a cases table (scan).
"""

from harmony.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".series": ["read_series", "SeriesInfo"],
    ".rtstruct": ["rasterise_rtstruct"],
    ".seg": ["read_seg_mask"],
    ".cache": ["cache_dir"],
    ".convert": ["convert_case", "convert_cases"],
    ".scan": ["scan_dicom", "write_scan"],
})
