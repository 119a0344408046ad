"""Make ``quick_retry`` instant in tests while recording the waits it asked for."""

from __future__ import annotations

from typing import Any, cast

import pytest


def record_retry_waits(monkeypatch: pytest.MonkeyPatch, *methods: object) -> list[float]:
    """Replace the sleep of each ``@quick_retry()`` method; return the list of waits."""
    waits: list[float] = []
    for method in methods:
        monkeypatch.setattr(cast(Any, method).retry, "sleep", waits.append)
    return waits
