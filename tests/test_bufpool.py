"""core/bufpool.pyx through its thin view (fastloop._core.BufPool): spare BUF_SIZE blocks
are reused last-in first-out, at most POOL_MAX are kept, and blocks of another size are freed,
never pooled."""

from __future__ import annotations

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
