"""The installed tierd's version, for `tierd version` and the metrics endpoint's build info."""
from __future__ import annotations

from importlib import metadata


def version() -> str:
    """The version of the installed tierd distribution; 0.0.0 when it is not installed."""
    try:
        return metadata.version("tierd")
    except metadata.PackageNotFoundError:
        return "0.0.0"
