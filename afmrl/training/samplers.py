"""Batch samplers. ``hard`` batches are filled with attribute neighbours so hard negatives happen.

Both samplers are deterministic functions of (seed, epoch): a resumed run regenerates the epoch and
skips the batches it already trained on. Each epoch visits every item at most once. Under several
processes every process draws the same global batches and takes its slice (:func:`shard`), so a hard
batch's neighbours stay in one global batch whatever the number of processes.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Iterator, Sequence


def _no_dup_ok(i: int, products: Sequence[int] | None, seen: set[int]) -> bool:
    return products is None or products[i] < 0 or products[i] not in seen


def random_batches(n: int, batch_size: int, seed: int, epoch: int,
                   products: Sequence[int] | None = None) -> list[list[int]]:  # fmt: skip
    """Shuffled batches (drop last). With ``products``, no two items of one known product share a
    batch (sentence-transformers' NoDuplicatesBatchSampler): clashing items wait for a later batch."""
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    if products is None:
        return [order[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
    batches, pending = [], order
    while len(pending) >= batch_size:
        batch, seen, rest = [], set(), []
        for i in pending:
            if len(batch) < batch_size and _no_dup_ok(i, products, seen):
                batch.append(i)
                if products[i] >= 0:
                    seen.add(products[i])
            else:
                rest.append(i)
        if len(batch) < batch_size:
            break
        batches.append(batch)
        pending = rest
    return batches


def neighbour_batches(keys: Sequence[tuple[Hashable, ...]], batch_size: int, ratio: float, seed: int, epoch: int,
                      products: Sequence[int] | None = None) -> list[list[int]]:  # fmt: skip
    """Batches where about ``ratio`` of the items are attribute neighbours of an anchor.

    ``keys[i]`` is a tuple from coarse to fine (e.g. (category, brand)); neighbours are taken from the
    finest key level first, then coarser ones, the rest of the batch at random.
    """
    n = len(keys)
    rng = random.Random(f"{seed}:{epoch}:hard")
    order = list(range(n))
    rng.shuffle(order)
    levels = max((len(k) for k in keys), default=0)
    groups: list[dict[tuple, list[int]]] = []
    for depth in range(levels, 0, -1):
        g: dict[tuple, list[int]] = defaultdict(list)
        for i in order:
            if all(v is not None for v in keys[i][:depth]):
                g[tuple(keys[i][:depth])].append(i)
        groups.append(g)
    used = [False] * n
    n_used = 0
    cursor = {id(g): defaultdict(int) for g in groups}
    batches: list[list[int]] = []
    fill_pos = 0
    n_neighbours = max(0, round(ratio * batch_size) - 1)
    for anchor in order:
        if used[anchor]:
            continue
        if n - n_used < batch_size:
            break
        batch, seen = [anchor], set()
        used[anchor] = True
        if products is not None and products[anchor] >= 0:
            seen.add(products[anchor])
        for depth_idx, g in enumerate(groups):
            depth = levels - depth_idx
            key = tuple(keys[anchor][:depth])
            members = g.get(key, [])
            pos = cursor[id(g)]
            while len(batch) - 1 < n_neighbours and pos[key] < len(members):
                j = members[pos[key]]
                pos[key] += 1
                if not used[j] and _no_dup_ok(j, products, seen):
                    batch.append(j)
                    used[j] = True
                    if products is not None and products[j] >= 0:
                        seen.add(products[j])
        while len(batch) < batch_size and fill_pos < n:
            j = order[fill_pos]
            fill_pos += 1
            if not used[j] and _no_dup_ok(j, products, seen):
                batch.append(j)
                used[j] = True
                if products is not None and products[j] >= 0:
                    seen.add(products[j])
        n_used += len(batch)
        if len(batch) < batch_size:
            break
        batches.append(batch)
    return batches


def epoch_batches(sampler: str, n: int, batch_size: int, seed: int, epoch: int, *, keys=None, ratio: float = 0.5,
                  products=None) -> list[list[int]]:  # fmt: skip
    if sampler == "hard":
        return neighbour_batches(keys, batch_size, ratio, seed, epoch, products)
    return random_batches(n, batch_size, seed, epoch, products)


def batch_stream(sampler: str, n: int, batch_size: int, seed: int, *, start_step: int = 0, keys=None,
                 ratio: float = 0.5, products=None) -> Iterator[list[int]]:  # fmt: skip
    """Endless batches over epochs, starting at global step ``start_step`` (for resume)."""
    epoch, step = 0, 0
    while True:
        batches = epoch_batches(sampler, n, batch_size, seed, epoch, keys=keys, ratio=ratio, products=products)
        if not batches:
            raise ValueError(f"not enough items ({n}) for one batch of {batch_size}")
        for b in batches:
            if step >= start_step:
                yield b
            step += 1
        epoch += 1


def shard(batch: Sequence[int], rank: int, world_size: int) -> list[int]:
    """Process ``rank``'s slice of a global batch (``len(batch) / world_size`` consecutive items; the
    whole batch on one process). The batch size must be a multiple of ``world_size``."""
    if len(batch) % world_size:
        raise ValueError(f"a batch of {len(batch)} cannot be split evenly over {world_size} processes")
    n = len(batch) // world_size
    return list(batch[rank * n : (rank + 1) * n])
