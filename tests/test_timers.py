"""core/timers.pyx through its thin view (fastloop._core.Timers): one FIFO list per kind, each
sorted by deadline because every timer of a kind has the same duration; set, unlink and pop
keep the lists whole, and the next deadline is the earliest head."""

from __future__ import annotations

import pytest

from fastloop._core import TIMER_NAMES, Timers

HEADER = TIMER_NAMES.index("header")
IDLE = TIMER_NAMES.index("idle")
WRITE = TIMER_NAMES.index("write")
NONE = 0


@pytest.fixture
def timers() -> Timers:
    return Timers(6, {HEADER: 100, IDLE: 50, WRITE: 1000})


def pop_all(t: Timers, kind: int, now: int) -> list:
    out = []
    while (i := t.pop(kind, now)) is not None:
        out.append(i)
    return out


def test_nothing_set_has_no_deadline(timers):
    assert timers.next_deadline() == -1
    assert timers.pop(HEADER, 10**9) is None
    assert [timers.kind(i) for i in range(6)] == [NONE] * 6


def test_set_puts_the_connection_on_its_kind_with_now_plus_the_duration(timers):
    timers.set(0, HEADER, 1000)
    assert (timers.kind(0), timers.deadline(0)) == (HEADER, 1100)
    assert timers.next_deadline() == 1100


def test_pop_takes_only_expired_heads_in_fifo_order(timers):
    for i, now in enumerate((0, 10, 20, 30)):  # deadlines 100, 110, 120, 130
        timers.set(i, HEADER, now)
    assert pop_all(timers, HEADER, 115) == [0, 1]
    assert timers.next_deadline() == 120
    assert pop_all(timers, HEADER, 1000) == [2, 3]
    assert timers.next_deadline() == -1
    assert timers.kind(2) == NONE


def test_pop_at_exactly_the_deadline_expires(timers):
    timers.set(4, IDLE, 0)
    assert timers.pop(IDLE, 49) is None
    assert timers.pop(IDLE, 50) == 4
    assert timers.kind(4) == NONE


def test_setting_again_moves_to_the_tail_with_a_new_deadline(timers):
    for i in range(3):
        timers.set(i, HEADER, 0)
    timers.set(0, HEADER, 5)
    assert pop_all(timers, HEADER, 1000) == [1, 2, 0]


def test_set_of_another_kind_leaves_the_first_list(timers):
    timers.set(0, HEADER, 0)
    timers.set(1, HEADER, 0)
    timers.set(0, WRITE, 0)
    assert timers.kind(0) == WRITE
    assert pop_all(timers, HEADER, 10**6) == [1]
    assert pop_all(timers, WRITE, 10**6) == [0]


@pytest.mark.parametrize("gone", [0, 1, 2])
def test_unlink_from_head_middle_or_tail_keeps_the_list_whole(timers, gone):
    for i in range(3):
        timers.set(i, HEADER, i)
    timers.unlink(gone)
    assert timers.kind(gone) == NONE
    timers.unlink(gone)  # unlinking twice is harmless
    assert pop_all(timers, HEADER, 10**6) == [i for i in range(3) if i != gone]
    timers.set(5, HEADER, 0)  # the emptied list takes a new head and tail
    assert pop_all(timers, HEADER, 10**6) == [5]


def test_next_deadline_is_the_earliest_head_over_all_kinds(timers):
    timers.set(0, WRITE, 0)     # 1000
    timers.set(1, HEADER, 0)    # 100
    timers.set(2, IDLE, 80)     # 130
    assert timers.next_deadline() == 100
    timers.unlink(1)
    assert timers.next_deadline() == 130
    timers.unlink(2)
    assert timers.next_deadline() == 1000


def test_bad_kind_or_index_raises(timers):
    with pytest.raises(ValueError):
        timers.set(0, NONE, 0)
    with pytest.raises(ValueError):
        timers.set(0, len(TIMER_NAMES), 0)
    with pytest.raises(IndexError):
        timers.set(6, HEADER, 0)
