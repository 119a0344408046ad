"""Loading a cascade file written by a test, expecting it to be refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.cascade_files import CascadeConfigError, load_file
from providers.base import Channel


def problems_of(
    tmp_path: Path, text: str, available: set[Channel] | None = None, name: str = "c.yaml"
) -> list[tuple[str, str, int | None]]:
    """(field, message, line) of each problem found in ``text`` saved as ``name``; every
    problem names that file."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CascadeConfigError) as caught:
        load_file(path, available)
    assert all(p.file == path for p in caught.value.problems)
    return [(p.field, p.message, p.line) for p in caught.value.problems]
