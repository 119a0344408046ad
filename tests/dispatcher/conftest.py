"""Fixtures for the dispatcher's database-level tests."""

from tests.support.dispatching import _make

__all__ = ["_make"]
