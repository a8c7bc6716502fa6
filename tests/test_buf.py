"""core/buf.h through its thin view (fastloop._bench.Buf): reserve compacts before it grows,
grows by doubling, keeps the live bytes across both, and consume resets an emptied buffer."""

from __future__ import annotations

import pytest

from fastloop._bench import BUF_MIN, Buf


def filled(data: bytes) -> Buf:
    b = Buf()
    assert b.reserve(len(data)) == 0
    b.put(data)
    return b


def test_empty_buffer_owns_nothing_until_reserve():
    b = Buf()
    assert (b.cap, b.start, b.end, b.address, b.data()) == (0, 0, 0, 0, b"")
    assert b.reserve(1) == 0
    assert b.cap == BUF_MIN == 16384 and b.room == BUF_MIN and b.address != 0


def test_first_reserve_larger_than_the_minimum_gets_a_power_of_two_multiple():
    b = Buf()
    assert b.reserve(BUF_MIN + 1) == 0
    assert b.cap == 2 * BUF_MIN
    c = Buf()
    assert c.reserve(5 * BUF_MIN) == 0
    assert c.cap == 8 * BUF_MIN


def test_put_appends_and_consume_moves_only_start():
    b = filled(b"hello ")
    assert b.reserve(5) == 0
    b.put(b"world")
    b.consume(6)
    assert b.data() == b"world" and (b.start, b.end) == (6, 11)


def test_consume_to_empty_resets_both_ends():
    b = filled(b"abc")
    b.consume(2)
    assert (b.start, b.end) == (2, 3)
    b.consume(1)
    assert (b.start, b.end) == (0, 0) and b.room == b.cap


def test_reserve_compacts_when_that_is_enough():
    b = filled(b"x" * (BUF_MIN - 10) + b"0123456789")
    address, cap = b.address, b.cap
    b.consume(BUF_MIN - 10)
    assert b.room == 0
    assert b.reserve(100) == 0
    # The same block: the ten live bytes slid back to 0.
    assert (b.address, b.cap, b.start, b.end) == (address, cap, 0, 10)
    assert b.data() == b"0123456789"


def test_reserve_grows_by_doubling_when_compacting_is_not_enough():
    data = bytes(range(256)) * (BUF_MIN // 256)
    b = filled(data)
    b.consume(100)
    assert b.reserve(101) == 0  # 16284 live + 101 > 16384
    assert b.cap == 2 * BUF_MIN and b.start == 0
    assert b.data() == data[100:]
    assert b.reserve(3 * BUF_MIN) == 0
    assert b.cap == 4 * BUF_MIN and b.data() == data[100:]


def test_reserve_with_enough_room_changes_nothing():
    b = filled(b"abc")
    state = (b.address, b.cap, b.start, b.end)
    assert b.reserve(b.room) == 0
    assert (b.address, b.cap, b.start, b.end) == state


def test_impossible_reserve_is_enomem_and_leaves_the_buffer_alone():
    b = filled(b"keep")
    state = (b.address, b.cap, b.start, b.end)
    assert b.reserve(2**64 - 2) == -12  # -ENOMEM: the size overflows, nothing is allocated
    assert (b.address, b.cap, b.start, b.end) == state and b.data() == b"keep"


def test_free_returns_to_empty_and_the_buffer_is_reusable():
    b = filled(b"abc")
    b.free()
    assert (b.cap, b.start, b.end, b.address) == (0, 0, 0, 0)
    assert b.reserve(3) == 0
    b.put(b"xyz")
    assert b.data() == b"xyz"


def test_the_view_refuses_what_the_c_contract_forbids():
    b = filled(b"ab")
    with pytest.raises(ValueError):
        b.consume(3)
    with pytest.raises(ValueError):
        b.put(b"z" * (b.room + 1))


def test_many_appends_and_consumes_keep_the_bytes_in_order():
    b = Buf()
    expect = b""
    for i in range(2000):
        chunk = bytes([i % 251]) * (i % 97 + 1)
        assert b.reserve(len(chunk)) == 0
        b.put(chunk)
        expect += chunk
        take = (i * 37) % (len(expect) + 1)
        b.consume(take)
        expect = expect[take:]
        assert b.data() == expect
