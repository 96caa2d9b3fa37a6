"""oaprobe: hierarchical supervision (OA yes/no + KL grade) of 3D knee-MRI encoders, as a probe."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("oaprobe")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
