"""Global batches across processes: gather embeddings with their gradient, and per-item metadata.

Under ``torchrun`` / ``accelerate launch`` each process holds its slice of the global batch (every
slice the same size, in rank order). The losses then compare each process's local rows against the
columns of the *whole* batch: in-batch negatives and AGCL's / GIST's / the oracle's masks span the
global batch, as in open_clip's ``ClipLoss(gather_with_grad=True, local_loss=True)``.

- :func:`gather_with_grad`: ``torch.distributed.nn.functional.all_gather``, whose backward sums the
  gradients every process computes for a slice and hands each process the sum for its own slice.
- :func:`gather_items`: the same for tensors that carry no gradient (product ids, attribute codes,
  guide embeddings), and :func:`gather_objects` for anything picklable (attribute dicts).
- :func:`local_rows`: where this process's rows sit in the gathered batch.

Without an initialised process group of two or more processes every function is the identity, so a
single process runs exactly the operations it ran before distribution existed.

Normalisation (the convention the tests check): each process's loss is the mean over its *local*
rows (both directions, against the global columns). Then

- the mean of the processes' losses equals the single-process loss on the concatenated batch, and
- the mean of the processes' parameter gradients (what DDP's all-reduce, or
  :func:`average_gradients`, computes) equals that loss's gradient;
- each process's gradient w.r.t. its local embeddings is ``world_size`` times the single-process
  gradient w.r.t. those rows (the all-gather backward sums ``world_size`` local-mean losses).

Example::

    a_all = gather_with_grad(a)            # (world * n, d), differentiable
    ids_all = gather_items(product_ids)    # (world * n,), no gradient
    rows = local_rows(a.shape[0])          # this process's rows of a_all
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the default group (1 when torch.distributed is not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 when torch.distributed is not initialised)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_distributed() -> bool:
    return world_size() > 1


def launched_world_size() -> int:
    """``WORLD_SIZE`` as set by ``torchrun`` / ``accelerate launch`` (1 when run plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def launched_rank() -> int:
    """``RANK`` as set by the launcher (0 when run plainly): readable before the process group exists."""
    return int(os.environ.get("RANK", "0") or 0)


def init_process_group(backend: str | None = None) -> bool:
    """Join the launcher's process group when ``WORLD_SIZE`` > 1 (``gloo`` on CPU, ``nccl`` on CUDA;
    the launcher's ``MASTER_ADDR`` / ``MASTER_PORT`` / ``RANK``). True when distributed afterwards."""
    if launched_world_size() <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":  # one GPU per process, as the launcher numbers them on this node
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0") or 0))
        dist.init_process_group(backend)
    return is_distributed()


def destroy_process_group() -> None:
    """Leave the process group (after a distributed run); nothing when there is none."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(world * n, ...) concatenation of every process's ``x`` (same shape on each), differentiable:
    the backward sums every process's gradient for this process's slice. Identity on one process."""
    if not is_distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # torch 2.10+ marks it deprecated for a private successor; it still works
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        return torch.cat(all_gather(x), dim=0)


@torch.no_grad()
def gather_items(x: torch.Tensor) -> torch.Tensor:
    """(world * n, ...) concatenation of a per-item tensor that carries no gradient (labels, attribute
    codes, guide embeddings). Identity on one process."""
    if not is_distributed():
        return x
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts, dim=0)


def gather_objects(items: list[Any]) -> list[Any]:
    """Every process's list of picklable per-item objects (e.g. attribute dicts), concatenated in rank
    order. The list itself on one process."""
    if not is_distributed():
        return items
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def local_rows(n_local: int) -> slice:
    """This process's rows in a gathered batch of equal slices."""
    start = rank() * n_local
    return slice(start, start + n_local)


@torch.no_grad()
def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce the gradients of ``params`` to their mean over processes (DDP's reduction, in one
    flat buffer). A parameter without a gradient counts as zero. Nothing on one process."""
    if not is_distributed():
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
        offset += n


@torch.no_grad()
def mean_over_processes(value: torch.Tensor) -> torch.Tensor:
    """The mean of a (detached) tensor over processes: e.g. the global batch's loss from the local ones."""
    if not is_distributed():
        return value
    out = value.detach().clone().float()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()
