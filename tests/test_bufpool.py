"""core/bufpool.pyx through its thin view (fastloop._core.BufPool): spare BUF_SIZE blocks
are reused last-in first-out, at most POOL_MAX are kept, and blocks of another size are freed,
never pooled."""

from __future__ import annotations

import errno

from fastloop._core import BUF_SIZE, POOL_MAX, BufPool


def test_an_empty_pool_hands_out_new_blocks():
    p = BufPool()
    a, b = p.get(), p.get()
    assert a and b and a != b and p.spare == 0
    p.put(a, BUF_SIZE)
    p.put(b, BUF_SIZE)


def test_a_block_put_back_is_the_next_one_handed_out():
    p = BufPool()
    a, b = p.get(), p.get()
    p.put(a, BUF_SIZE)
    p.put(b, BUF_SIZE)
    assert p.spare == 2
    assert p.get() == b  # last in, first out: the warmest block
    assert p.get() == a
    assert p.spare == 0
    p.put(a, BUF_SIZE)
    p.put(b, BUF_SIZE)


def test_blocks_of_another_size_are_freed_not_kept():
    p = BufPool()
    p.put(p.alloc(2 * BUF_SIZE), 2 * BUF_SIZE)
    p.put(p.alloc(BUF_SIZE // 2), BUF_SIZE // 2)
    assert p.spare == 0


def test_at_most_pool_max_blocks_are_kept():
    p = BufPool()
    blocks = [p.get() for _ in range(POOL_MAX + 3)]
    for b in blocks:
        p.put(b, BUF_SIZE)
    assert p.spare == POOL_MAX
    assert p.get() == blocks[POOL_MAX - 1]  # the last one kept; the three after it were freed


# fl_bufpool_reserve: fl_buf_reserve (buf.h, tests/test_buf.py) with the pool's blocks.

ENOMEM = errno.ENOMEM


def test_a_first_reserve_takes_the_pools_block():
    p = BufPool()
    warm = p.get()
    p.put(warm, BUF_SIZE)
    assert p.reserve(1, 1 << 31) == 0
    assert p.buf[:4] == (warm, BUF_SIZE, 0, 0) and p.spare == 0


def test_growing_moves_the_live_bytes_and_gives_the_old_block_back():
    p = BufPool()
    assert p.reserve(BUF_SIZE, 1 << 31) == 0
    first = p.buf[0]
    p.append(b"x" * 100 + b"live" + b"y" * (BUF_SIZE - 104))
    p.consume(100)
    assert p.reserve(BUF_SIZE, 1 << 31) == 0  # compacting frees 100 bytes: not enough
    address, cap, start, end, data = p.buf
    assert (cap, start, end) == (2 * BUF_SIZE, 0, BUF_SIZE - 100)
    assert data.startswith(b"live") and address != first
    assert p.spare == 1 and p.get() == first


def test_compacting_when_it_is_enough_keeps_the_block():
    p = BufPool()
    assert p.reserve(BUF_SIZE, 1 << 31) == 0
    first = p.buf[0]
    p.append(b"a" * (BUF_SIZE - 4) + b"tail")
    p.consume(BUF_SIZE - 4)
    assert p.reserve(100, 1 << 31) == 0
    assert p.buf == (first, BUF_SIZE, 0, 4, b"tail") and p.spare == 0


def test_a_block_larger_than_cap_max_is_refused_and_the_buffer_kept():
    p = BufPool()
    assert p.reserve(1, BUF_SIZE) == 0
    p.append(b"kept")
    before = p.buf
    assert p.reserve(BUF_SIZE, BUF_SIZE) == -ENOMEM
    assert p.buf == before
    assert p.reserve(BUF_SIZE, 2 * BUF_SIZE) == 0 and p.buf[1:] == (2 * BUF_SIZE, 0, 4, b"kept")


def test_a_first_reserve_larger_than_a_block_is_not_a_pool_block():
    p = BufPool()
    assert p.reserve(3 * BUF_SIZE, 1 << 31) == 0
    assert p.buf[1] == 4 * BUF_SIZE
