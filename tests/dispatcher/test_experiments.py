"""A/B assignment and interval math: pure, no database."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from dispatcher.confidence import newcombe, wilson
from dispatcher.experiments import assign, choose

IDS = [f"customer-{n}" for n in range(10_000)]


@pytest.mark.parametrize(
    "weights",
    [
        [("control", 1.0), ("variant", 1.0)],
        [("control", 3.0), ("email_first", 1.0)],
        [("a", 50.0), ("b", 30.0), ("c", 20.0)],
    ],
)
def test_ten_thousand_customers_split_within_one_percent_of_the_weights(weights):
    """Done-when 3: each variant's share of 10,000 ids is within 1 % of its weight's."""
    counts = Counter(assign(cid, "exp", weights) for cid in IDS)
    total = sum(w for _, w in weights)
    for name, weight in weights:
        assert abs(counts[name] / len(IDS) - weight / total) < 0.01, (name, counts)


def test_assignment_is_stable_and_follows_the_documented_hash():
    """The same id gets the same variant every time, and the variant is the documented
    SHA-256 position against cumulative weights, recomputed here: nothing depends on the
    process (Python's salted hash() is not used), so restarts and other hosts agree."""
    weights = [("a", 1.0), ("b", 1.0), ("c", 2.0)]
    here = [assign(cid, "stable", weights) for cid in IDS[:2000]]
    assert here == [assign(cid, "stable", weights) for cid in IDS[:2000]]
    for cid, got in zip(IDS[:2000], here, strict=True):
        digest = hashlib.sha256(f"stable:{cid}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2.0**64 * 4.0
        assert got == ("a" if point < 1 else "b" if point < 2 else "c")


def test_another_experiment_name_splits_independently():
    """The experiment name salts the hash: the same customers are shuffled anew."""
    weights = [("a", 1.0), ("b", 1.0)]
    first = [assign(cid, "one", weights) for cid in IDS[:2000]]
    second = [assign(cid, "two", weights) for cid in IDS[:2000]]
    agree = sum(x == y for x, y in zip(first, second, strict=True)) / 2000
    assert 0.45 < agree < 0.55


def test_stopped_variant_moves_only_its_own_customers():
    """Stop b: its customers are spread over a and c by weight; a's and c's stay put."""
    weights = [("a", 1.0), ("b", 1.0), ("c", 2.0)]
    before = {cid: choose(cid, "exp", weights, {}) for cid in IDS}
    after = {cid: choose(cid, "exp", weights, {"b": "stopped"}) for cid in IDS}
    assert "b" not in after.values()
    assert all(after[cid] == v for cid, v in before.items() if v != "b")
    moved = Counter(after[cid] for cid, v in before.items() if v == "b")
    assert abs(moved["a"] / sum(moved.values()) - 1 / 3) < 0.03


def test_promoted_variant_gets_everyone_and_all_stopped_ends_the_experiment():
    weights = [("a", 1.0), ("b", 1.0)]
    assert {choose(cid, "exp", weights, {"b": "promoted"}) for cid in IDS[:300]} == {"b"}
    stopped = {"a": "stopped", "b": "stopped"}
    assert {choose(cid, "exp", weights, stopped) for cid in IDS[:300]} == {None}


def test_assign_needs_a_variant():
    with pytest.raises(ValueError, match="at least one variant"):
        assign("c", "exp", [])


def test_wilson_interval_matches_the_textbook():
    """Newcombe (1998a) example: 81/263 -> 0.2553 to 0.3662."""
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ],
)
def test_newcombe_difference_interval_matches_the_paper(counts, expected):
    """Newcombe (1998b), Table II, method 10 (hybrid score), examples (a), (b), (e)."""
    low, high = newcombe(*counts)  # type: ignore[misc]
    assert (round(low, 4), round(high, 4)) == expected


def test_newcombe_without_trials_is_none():
    assert newcombe(1, 2, 0, 0) is None
