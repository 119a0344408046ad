"""``order:`` in a cascade file: static by default, adaptive on request, anything else an
error naming the file, the field and its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.cascade_files import CascadeConfigError, load_file

FILE = """\
name: ok
ttl: 1h
{order}steps:
  - channel: push
    wait_for: read
    timeout: 2m
  - channel: sms
    wait_for: delivered
    timeout: 10m
"""


@pytest.mark.parametrize(("line", "order"), [("", "static"), ("order: adaptive\n", "adaptive")])
def test_order_loads(tmp_path: Path, line: str, order: str):
    """No ``order`` means the file's order; ``order: adaptive`` is kept."""
    path = tmp_path / "c.yaml"
    path.write_text(FILE.format(order=line))
    assert load_file(path).order == order


def test_unknown_order_names_file_field_and_line(tmp_path: Path):
    """A misspelt order fails loading, saying where and what is allowed."""
    path = tmp_path / "c.yaml"
    path.write_text(FILE.format(order="order: adaptiv\n"))
    with pytest.raises(CascadeConfigError) as caught:
        load_file(path)
    ((problem,),) = [caught.value.problems]
    assert (problem.file, problem.field, problem.line) == (path, "order", 3)
    assert "'static' or 'adaptive'" in problem.message
    assert str(path) in str(caught.value)
