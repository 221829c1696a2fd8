"""Cached contrastive loss (GradCache): a large batch in small memory, with the same gradients.

A contrastive loss couples every item of the batch, so its batch cannot simply be split into
accumulation steps. GradCache (Gao et al., "Scaling Deep Contrastive Learning Batch Size under
Memory Limited Setup", RepL4NLP 2021; sentence-transformers' ``CachedMultipleNegativesRankingLoss``)
splits the *encoder* work instead:

1. embed the batch in mini-batches of ``mini_batch_size`` rows without a graph (no activations kept),
   recording each mini-batch's random state (dropout);
2. compute the loss on the full batch of (detached) embeddings and backpropagate it to the
   embeddings only: this caches dL/d(embedding) for every row (and gives the loss's own parameters,
   the temperature, their gradient);
3. re-embed each mini-batch with a graph, under its recorded random state (the same dropout masks),
   and backpropagate the cached embedding gradients through it: sum_rows <e_row, dL/de_row>.

The parameter gradients are those of the uncached loss (tested for AGCL and InfoNCE); memory holds
one mini-batch's activations plus the (B, d) embeddings. Exact for embedding functions whose rows do
not depend on each other (the heads, LayerNorm transformers); a BatchNorm tower in training mode
(EfficientNet in ``train.mode: full``) normalises each mini-batch by its own statistics and updates
its running statistics in both passes, so there the cached gradients approximate the uncached ones. Works unchanged across processes: the loss
of step 2 gathers the embeddings (:mod:`afmrl.losses.distributed`).

Inputs: ``loss_fn`` (any of afmrl's losses: ``loss_fn(a, b, **extras)``), ``embed(rows)`` -> the
(len(rows), d) embeddings ``a`` and ``b`` of the rows ``rows`` (a ``slice``) of the batch, ``n`` the
number of rows, ``extras`` the loss's per-item inputs for the whole batch.

Example::

    cache = CachedLoss(AGCLLoss(), mini_batch_size=32)
    loss = cache.backward(lambda rows: (img_head(img_feats[rows]), txt_head(txt_feats[rows])), n=256,
                          attr_codes=codes, attr_key_weights=key_weights)   # gradients are now in .grad
    opt.step()
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

Embed = Callable[[slice], tuple[torch.Tensor, torch.Tensor]]


class RandomState:
    """The CPU (and every CUDA device's) random state at creation; ``with state:`` runs its block
    under that state and restores the surrounding one afterwards (GradCache's ``RandContext``)."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        self._fork: contextlib.AbstractContextManager[None] | None = None

    def __enter__(self) -> None:
        self._fork = torch.random.fork_rng(devices=list(range(len(self.cuda))), enabled=True)
        self._fork.__enter__()
        torch.set_rng_state(self.cpu)
        if self.cuda:
            torch.cuda.set_rng_state_all(self.cuda)

    def __exit__(self, *exc: object) -> None:
        assert self._fork is not None
        self._fork.__exit__(*exc)
        self._fork = None


def chunks(n: int, size: int) -> Iterator[slice]:
    """The row slices of a batch of ``n`` rows, ``size`` at a time (the last one may be shorter)."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class CachedLoss:
    """Wraps a contrastive loss with GradCache: :meth:`backward` computes the loss of a whole batch,
    embedding it ``mini_batch_size`` rows at a time, and leaves the gradients in the parameters."""

    def __init__(self, loss_fn: nn.Module, mini_batch_size: int) -> None:
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        self.loss_fn = loss_fn
        self.mini_batch_size = mini_batch_size

    def backward(self, embed: Embed, n: int, *, backward: Callable[[torch.Tensor], None] | None = None,
                 **extras: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """The batch's loss (detached); its gradients are accumulated into the parameters of the
        embedding function and of the loss. ``backward(loss)`` runs the loss's backward (default
        ``loss.backward()``; a mixed-precision scaler's ``accelerator.backward``): its scale carries
        over to the cached embedding gradients, so every parameter gradient is scaled alike."""
        parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        states: list[RandomState] = []
        with torch.no_grad():  # pass 1: embeddings only, no activations kept
            for rows in chunks(n, self.mini_batch_size):
                states.append(RandomState())
                parts.append(embed(rows))
        a = torch.cat([p[0] for p in parts]).detach().requires_grad_(True)
        b = torch.cat([p[1] for p in parts]).detach().requires_grad_(True)
        loss = self.loss_fn(a, b, **extras)
        (backward or torch.Tensor.backward)(loss)  # dL/da, dL/db cached; the temperature's gradient
        grad_a, grad_b = a.grad, b.grad
        for rows, state in zip(chunks(n, self.mini_batch_size), states, strict=True):  # pass 2: with a graph
            with state:
                ea, eb = embed(rows)
            surrogate = (ea * grad_a[rows].to(ea.dtype)).sum() + (eb * grad_b[rows].to(eb.dtype)).sum()
            surrogate.backward()
        return loss.detach()
