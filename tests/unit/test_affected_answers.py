"""The order-keeping parts of gate/server/affected_answers.py: grouping rows and patching a kept answer.

A kept answer is a list of groups keyed (-severity, digest); a patch drops every group of the changed
images and puts their fresh groups where the store's order would: these tests check that against the
order computed from scratch, for random answers and random changes.
"""

from __future__ import annotations

import random

import pytest

from gate.server.affected_answers import Group, ReadyAnswer, group_rows


def answer_of(rows: dict[str, list[tuple[int, bytes]]]) -> list[Group]:
    """From scratch: every image's (severity, row) pairs in the store's order, grouped."""
    flat = sorted(
        ((-sev, digest), n, row) for digest, pairs in rows.items() for n, (sev, row) in enumerate(pairs)
    )
    return group_rows((key, row) for key, _, row in flat)


def test_group_rows_groups_consecutive_rows_of_one_key() -> None:
    rows = [((-5, "a"), b"1"), ((-5, "a"), b"2"), ((-5, "b"), b"3"), ((-2, "a"), b"4")]
    assert group_rows(rows) == [
        Group((-5, "a"), (b"1", b"2")),
        Group((-5, "b"), (b"3",)),
        Group((-2, "a"), (b"4",)),
    ]
    assert group_rows([]) == []


@pytest.mark.parametrize("seed", range(40))
def test_a_patch_equals_the_answer_read_from_scratch(seed: int) -> None:
    rng = random.Random(seed)
    digests = [f"sha256:{n:064x}" for n in rng.sample(range(1000), 30)]

    def rows_of(digest: str) -> list[tuple[int, bytes]]:
        # Zero to three rows at up to three severities: an image may leave or join the answer.
        return [
            (rng.randint(0, 5), f"{digest[-4:]}-{rng.random()}".encode()) for _ in range(rng.randint(0, 3))
        ]

    before = {d: rows_of(d) for d in digests}
    changed = frozenset([*rng.sample(digests, rng.randint(0, 10)), f"sha256:{2000 + seed:064x}"])
    after = dict(before)
    for d in changed:
        after[d] = rows_of(d)
    kept = ReadyAnswer("1", tuple(answer_of(before)))
    fresh = answer_of({d: after[d] for d in changed})
    patched = kept.patched("2", changed, fresh)
    assert patched.mark == "2"
    assert list(patched.groups) == answer_of(after)
    assert patched.rows == tuple(r for g in answer_of(after) for r in g.rows)


def test_nothing_changed_keeps_the_rows_under_the_new_mark() -> None:
    kept = ReadyAnswer("7", (Group((-3, "a"), (b"x",)),))
    assert kept.patched("7", frozenset(), []) is kept
    moved = kept.patched("9", frozenset(), [])
    assert (moved.mark, moved.rows) == ("9", (b"x",))


def test_a_fresh_row_of_an_unchanged_image_is_refused() -> None:
    kept = ReadyAnswer("1", (Group((-3, "a"), (b"x",)),))
    with pytest.raises(ValueError, match="not among the changed images"):
        kept.patched("2", frozenset({"b"}), [Group((-3, "c"), (b"y",))])
