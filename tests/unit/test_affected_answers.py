"""The pure parts of gate/server/affected_answers.py: grouping rows, patching, storing and reading back.

A kept answer is a list of groups keyed (-severity, digest); a patch drops every group of the changed
images and puts their fresh groups where the store's order would: these tests check that against the
order computed from scratch, for random answers and random changes.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from gate.server.affected_answers import FORMAT, Group, ReadyAnswer, decode_answer, encode_answer, group_rows


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


def random_answer(rng: random.Random, mark: str = "5") -> ReadyAnswer:
    """An answer of random images at random severities and stages, one to three rows a group."""
    groups = [
        Group(
            (-rng.randint(0, 5), f"sha256:{n:064x}"),
            tuple(rng.randbytes(rng.randint(0, 40)) for _ in range(rng.randint(1, 3))),
            rng.choice(["", "d", "t", "s1", "s2", "p"]),
        )
        for n in rng.sample(range(10_000), rng.randint(0, 60))
    ]
    return ReadyAnswer(mark, sorted(groups))


@pytest.mark.parametrize("seed", range(20))
def test_a_stored_answer_reads_back_as_it_was_and_filters_by_stage(seed: int) -> None:
    rng = random.Random(seed)
    answer = random_answer(rng)
    stored = encode_answer(answer)
    assert (stored.format, stored.mark, stored.row_count) == (FORMAT, "5", len(answer.rows))
    back = decode_answer(stored, "")
    assert (back.mark, back.groups, back.rows, back.stored) == ("5", answer.groups, answer.rows, True)
    for stage in ("d", "p", "s1"):
        only = decode_answer(stored, stage)
        assert only.groups == tuple(g for g in answer.groups if g.stage == stage)
        assert only.groups == answer.only(stage).groups
    # A stored answer patches like a kept one.
    changed = frozenset(k[1] for k in rng.sample(answer.keys, min(3, len(answer.keys))))
    fresh = [Group((-2, d), (b"new",), "p") for d in sorted(changed)]
    assert back.patched("6", changed, fresh).groups == answer.patched("6", changed, fresh).groups


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: replace(s, format=s.format + "x"),
        lambda s: replace(s, row_count=s.row_count + 1),
        lambda s: replace(s, body=s.body[:-1]),
        lambda s: replace(s, body=s.body + b"\0"),
        lambda s: replace(s, body=s.body[:12]),
        lambda s: replace(s, body=b"GAA1" + s.body[4:]),
        lambda s: replace(s, body=s.body[:20] + b"\xff" + s.body[21:]),  # the digests' text
    ],
)
def test_a_damaged_stored_answer_is_refused(damage: Any) -> None:
    stored = encode_answer(random_answer(random.Random(7)))
    assert decode_answer(stored, "").rows  # the undamaged one reads
    with pytest.raises((ValueError, UnicodeDecodeError)):
        decode_answer(damage(stored), "")


def test_columns_that_disagree_are_refused() -> None:
    with pytest.raises(ValueError, match="agree"):
        ReadyAnswer.of_columns("1", [(-1, "a")], [""], (0, 2), [b"x"])
