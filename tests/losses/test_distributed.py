"""Two processes on CPU (gloo) give the loss and gradients of one process on the concatenated batch.

Normalisation under test (afmrl.losses.distributed): each process's loss is the mean over its local
rows against the global columns; the mean of the processes' losses is the single-process loss, the
mean of their parameter gradients (DDP's all-reduce, ``average_gradients``) is its gradient, and each
process's gradient w.r.t. its own embeddings is ``world_size`` times the single-process one.
The batch is built so every method's masks cross the process boundary (a false negative, a hard
negative, a duplicate product and a guide-masked pair each join a row of rank 0 with one of rank 1).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from afmrl.losses import AGCLLoss, CachedLoss, GISTLoss, InfoNCELoss, OracleLoss
from afmrl.losses.distributed import average_gradients, mean_over_processes

pytestmark = pytest.mark.slow  # two spawned processes (each imports torch: ~15 s on 2 cores)

WORLD, N, D_IN, D = 2, 8, 6, 4
METHODS = ("infonce", "agcl", "agcl-levers", "agcl-guided", "gist", "oracle")


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Two linear heads (the same initial weights everywhere), the global batch's inputs and per-item
    metadata whose masks join rows of different processes (rows 0-3: rank 0, rows 4-7: rank 1)."""
    torch.manual_seed(0)
    heads = nn.ModuleDict({"a": nn.Linear(D_IN, D), "b": nn.Linear(D_IN, D)})
    g = torch.Generator().manual_seed(1)
    xa, xb = torch.randn(N, D_IN, generator=g), torch.randn(N, D_IN, generator=g)
    codes = torch.tensor([[0, 0, 0], [1, 1, 1], [2, 2, 0], [3, -1, 1], [4, 4, 4], [1, 1, 1], [2, 2, 1], [5, 5, 5]])
    guides = F.normalize(torch.randn(N, 3, generator=g), dim=-1)
    guides[6] = guides[2]  # a guide-masked pair across the two processes
    items = {"attr_codes": codes, "product_ids": torch.tensor([0, 1, 2, -1, 3, 1, 4, 5]),
             "guide_a": guides, "guide_b": guides}  # fmt: skip
    return heads, xa, xb, items


def _loss(method: str) -> nn.Module:
    if method == "infonce":
        return InfoNCELoss(temperature=0.1)
    if method == "agcl":
        return AGCLLoss(temperature=0.1, tau_hard=0.5, tau_fn=1.0, beta=2.0, min_shared_keys=2)
    if method == "agcl-levers":  # weighted positives and intra-modal terms (afmrl.losses.core's block form)
        return AGCLLoss(temperature=0.1, tau_hard=0.5, tau_fn=1.0, beta=2.0, min_shared_keys=2, fn_as_positive=True,
                        positive_weight=0.5, intra_modal=True)  # fmt: skip
    if method == "agcl-guided":  # attribute weights plus GIST's guide filter
        return AGCLLoss(temperature=0.1, tau_hard=0.5, tau_fn=1.0, beta=2.0, min_shared_keys=2, guide_margin=0.01)
    if method == "gist":
        return GISTLoss(temperature=0.1, margin=0.01)
    return OracleLoss(temperature=0.1)


def _step(method: str, rows: slice, mini_batch_size: int | None = None) -> dict[str, torch.Tensor]:
    """Loss, parameter gradients (heads and temperature) and embedding gradients for ``rows``."""
    heads, xa, xb, items = _problem()
    loss_fn = _loss(method)
    extras = {k: v[rows] for k, v in items.items()}
    extras["attr_key_weights"] = torch.tensor([1.0, 1.0, 2.0])
    params = [*heads.parameters(), *loss_fn.parameters()]

    def embed(r: slice) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(heads["a"](xa[rows][r]), dim=-1), F.normalize(heads["b"](xb[rows][r]), dim=-1)

    n = rows.stop - rows.start
    if mini_batch_size is None:
        a, b = embed(slice(0, n))
        a.retain_grad()
        b.retain_grad()
        loss = loss_fn(a, b, **extras)
        loss.backward()
        emb_grads = torch.cat([a.grad, b.grad], dim=1)
    else:
        loss = CachedLoss(loss_fn, mini_batch_size).backward(embed, n, **extras)
        emb_grads = torch.zeros(0)
    local_loss = loss.detach().clone()
    average_gradients(params)
    return {"loss": local_loss, "global_loss": mean_over_processes(loss), "emb_grads": emb_grads,
            "grads": torch.cat([p.grad.reshape(-1) for p in params])}  # fmt: skip


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        rows = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
        results = {m: _step(m, rows) for m in METHODS}
        results |= {f"{m}-cached": _step(m, rows, mini_batch_size=3) for m in ("infonce", "agcl")}
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, dict[str, torch.Tensor]]]:
    out = tmp_path_factory.mktemp("dist")
    ctx = mp.start_processes(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=False, start_method="spawn")
    ok = ctx.join(timeout=120)
    while not ok:  # join returns False while processes still run; raises if one failed
        ok = ctx.join(timeout=120)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("method", METHODS)
def test_two_processes_equal_one_process_on_the_concatenated_batch(two_processes, method):
    ref = _step(method, slice(0, N))  # one process, no process group: the whole batch
    ranks = [r[method] for r in two_processes]
    # the masks really cross the processes: the global loss differs from the mean of per-process losses
    # computed alone (each rank's rows against only its own columns)
    alone = torch.stack([_step(method, slice(r * N // WORLD, (r + 1) * N // WORLD))["loss"] for r in range(WORLD)])
    assert abs(float(alone.mean()) - float(ref["loss"])) > 1e-3
    torch.testing.assert_close(torch.stack([r["loss"] for r in ranks]).mean(), ref["loss"], atol=1e-6, rtol=1e-6)
    for r in ranks:  # every process logs the global figure and holds the same averaged gradient
        torch.testing.assert_close(r["global_loss"], ref["loss"], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(r["grads"], ref["grads"], atol=1e-6, rtol=1e-5)
    emb = torch.cat([r["emb_grads"] for r in ranks]) / WORLD
    torch.testing.assert_close(emb, ref["emb_grads"], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["infonce", "agcl"])
def test_cached_loss_across_two_processes_gives_the_same_gradients(two_processes, method):
    ref = _step(method, slice(0, N))
    for r in two_processes:
        torch.testing.assert_close(r[f"{method}-cached"]["global_loss"], ref["loss"], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(r[f"{method}-cached"]["grads"], ref["grads"], atol=1e-6, rtol=1e-5)
