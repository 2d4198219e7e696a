"""harmony: benchmark the reproducibility of radiomic features and harmonize them across scanners."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("harmony-radiomics")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
