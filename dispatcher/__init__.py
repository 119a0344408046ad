"""Cascade."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cascade-dispatcher")
except PackageNotFoundError:  # pragma: no cover - a bare checkout, not installed
    __version__ = "0.0.0"
