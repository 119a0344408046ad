"""Fixtures shared by the provider tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.transport import CannedClients


@pytest.fixture(name="canned")
def _canned() -> Iterator[CannedClients]:
    clients = CannedClients()
    yield clients
    clients.close()
