"""GradCache (CachedLoss): the loss and every parameter gradient of the uncached loss, in mini-batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from afmrl.losses import AGCLLoss, CachedLoss, InfoNCELoss
from afmrl.losses.cached import chunks

N, D_IN, D = 10, 12, 6


def _setup(method: str, dropout: float = 0.0):
    torch.manual_seed(0)
    towers = nn.ModuleDict({side: nn.Sequential(nn.Linear(D_IN, 16), nn.GELU(), nn.Dropout(dropout), nn.Linear(16, D))
                            for side in "ab"})  # fmt: skip
    loss_fn = InfoNCELoss(temperature=0.1) if method == "infonce" else AGCLLoss(temperature=0.1, min_shared_keys=1)
    g = torch.Generator().manual_seed(1)
    xa, xb = torch.randn(N, D_IN, generator=g), torch.randn(N, D_IN, generator=g)
    codes = torch.randint(0, 3, (N, 2), generator=g)  # many shared attributes: masks and hard negatives
    extras = {"attr_codes": codes, "attr_key_weights": torch.ones(2)} if method == "agcl" else {}

    def embed(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(towers["a"](xa[rows]), dim=-1), F.normalize(towers["b"](xb[rows]), dim=-1)

    params = [*towers.parameters(), *loss_fn.parameters()]
    return embed, loss_fn, extras, params


def _grads(params) -> list[torch.Tensor]:
    return [p.grad.clone() for p in params]


@pytest.mark.parametrize("method", ["infonce", "agcl"])
@pytest.mark.parametrize("mini_batch_size", [1, 3, 10])
def test_cached_loss_equals_uncached_loss_and_gradients(method, mini_batch_size):
    embed, loss_fn, extras, params = _setup(method)
    ref = loss_fn(*embed(slice(0, N)), **extras)
    ref.backward()
    ref_grads = _grads(params)

    embed, loss_fn, extras, params = _setup(method)
    loss = CachedLoss(loss_fn, mini_batch_size).backward(embed, N, **extras)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, ref.detach(), atol=1e-6, rtol=1e-6)
    assert params[-1].grad is not None and params[-1].grad.abs() > 0  # the temperature learns too
    for got, want in zip(_grads(params), ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_cached_loss_replays_each_mini_batch_dropout():
    """With dropout, pass 2 must draw the masks of pass 1: compare with an uncached loss whose
    embeddings come from the same mini-batches in the same order (the same random draws)."""
    embed, loss_fn, extras, params = _setup("infonce", dropout=0.5)
    torch.manual_seed(7)
    parts = [embed(rows) for rows in chunks(N, 4)]
    ref = loss_fn(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    ref.backward()
    ref_grads, ref_rng = _grads(params), torch.get_rng_state()

    embed, loss_fn, extras, params = _setup("infonce", dropout=0.5)
    torch.manual_seed(7)
    loss = CachedLoss(loss_fn, 4).backward(embed, N)
    torch.testing.assert_close(loss, ref.detach(), atol=1e-6, rtol=1e-6)
    for got, want in zip(_grads(params), ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert torch.equal(torch.get_rng_state(), ref_rng)  # the replay leaves the random stream where pass 1 did


def test_cached_loss_scales_every_gradient_with_the_loss_backward():
    """A mixed-precision scaler multiplies the loss: the cached embedding gradients carry the factor."""
    embed, loss_fn, extras, params = _setup("agcl")
    CachedLoss(loss_fn, 3).backward(embed, N, **extras)
    plain = _grads(params)
    embed, loss_fn, extras, params = _setup("agcl")
    CachedLoss(loss_fn, 3).backward(embed, N, backward=lambda loss: (loss * 8.0).backward(), **extras)
    for got, want in zip(_grads(params), plain, strict=True):
        torch.testing.assert_close(got, 8.0 * want, atol=1e-5, rtol=1e-5)


def test_mini_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="mini_batch_size"):
        CachedLoss(InfoNCELoss(), 0)
