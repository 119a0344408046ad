"""What one fault run produced, the promises it must keep, and the printed table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest


@dataclass
class Counts:
    """What one fault run produced, from the provider's side and the database's."""

    notifications: int
    paid_sends: int
    duplicates: int  #: paid requests beyond the first, per attempt id or per notification
    final_states: Counter[str]
    open: int  #: notifications not in a final state
    unknowns: int  #: attempts recorded as "may have been sent" (explained, never resent)
    unexplained: int  #: paid requests whose attempt neither recorded the sid nor went unknown
    doubled_escalations: int  #: attempts escalated more than once, or a step created twice
    extra: dict[str, int] = field(default_factory=dict)

    def table(self, title: str) -> str:
        rows = [
            ("notifications", self.notifications),
            ("paid sends", self.paid_sends),
            ("duplicates", self.duplicates),
            *((f"final: {state}", n) for state, n in sorted(self.final_states.items())),
            ("not final", self.open),
            ("unknowns", self.unknowns),
            ("unexplained paid sends", self.unexplained),
            ("doubled escalations", self.doubled_escalations),
            *self.extra.items(),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"  {name:<{width}}  {value:>6}" for name, value in rows]
        return "\n".join([f"\n== fault suite: {title}", *lines])

    def assert_clean(self) -> None:
        """The promises: no paid send twice, nothing lost, nothing unexplained."""
        assert self.duplicates == 0, self
        assert self.open == 0, self
        assert self.unexplained == 0, self
        assert self.doubled_escalations == 0, self


def report(capsys: pytest.CaptureFixture[str], title: str, counts: Counts) -> None:
    """Print the count table even when pytest captures output."""
    with capsys.disabled():
        print(counts.table(title))
