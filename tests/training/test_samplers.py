from __future__ import annotations

import random

from afmrl.training.samplers import batch_stream, neighbour_batches, random_batches


def _data(n=300, seed=0):
    rng = random.Random(seed)
    keys = [(rng.choice("abcd"), rng.choice("wxyz")) for _ in range(n)]
    products = [i // 3 for i in range(n)]
    return keys, products


def test_no_duplicate_products_in_a_batch():
    keys, products = _data()
    for batches in (random_batches(300, 32, 0, 0, products), neighbour_batches(keys, 32, 0.6, 0, 0, products)):
        assert batches
        for b in batches:
            assert len(b) == 32 and len({products[i] for i in b}) == 32


def test_hard_batches_are_full_of_attribute_neighbours():
    keys, _ = _data()

    def neighbour_share(batches):
        shares = []
        for b in batches:
            anchor = keys[b[0]]
            shares.append(sum(keys[i] == anchor for i in b[1:]) / (len(b) - 1))
        return sum(shares) / len(shares)

    hard = neighbour_batches(keys, 20, 0.5, 0, 0)
    rand = random_batches(300, 20, 0, 0)
    assert neighbour_share(hard) > 0.35 > neighbour_share(rand)
    assert all(len(set(b)) == len(b) for b in hard)
    seen = [i for b in hard for i in b]
    assert len(seen) == len(set(seen))  # each item at most once per epoch


def test_batches_are_deterministic_and_resumable():
    keys, _ = _data()
    full = batch_stream("hard", 300, 16, 7, keys=keys)
    first = [next(full) for _ in range(40)]
    resumed = batch_stream("hard", 300, 16, 7, start_step=25, keys=keys)
    assert [next(resumed) for _ in range(15)] == first[25:]
    other = batch_stream("hard", 300, 16, 8, keys=keys)
    assert [next(other) for _ in range(5)] != first[:5]
