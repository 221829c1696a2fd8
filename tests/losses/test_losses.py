from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from afmrl.losses import AGCLLoss, GISTLoss, InfoNCELoss, OracleLoss, agcl_weights, weighted_contrastive
from afmrl.losses.gist import gist_mask

E = math.e


def _rand(n=6, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (F.normalize(torch.randn(n, d, generator=g), dim=-1), F.normalize(torch.randn(n, d, generator=g), dim=-1))


def test_infonce_matches_clip_cross_entropy():
    a, b = _rand()
    loss = InfoNCELoss(temperature=0.1, learnable=False)(a, b)
    ref = 0.5 * (F.cross_entropy(a @ b.T / 0.1, torch.arange(6)) + F.cross_entropy(b @ a.T / 0.1, torch.arange(6)))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_infonce_hand_computed_two_items():
    eye = torch.eye(2)
    loss = InfoNCELoss(temperature=1.0, learnable=False)(eye, eye)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)


def test_temperature_is_learnable_and_clamped():
    loss_fn = InfoNCELoss(temperature=0.05)
    a, b = _rand()
    loss_fn(a, b).backward()
    assert loss_fn.temperature.log_scale.grad is not None
    assert InfoNCELoss(temperature=0.001).temperature().item() == pytest.approx(100.0)


def test_agcl_hand_computed_case():
    # logits = identity (tau = 1); pair (0,1) shares all attributes -> false negative, masked;
    # pair (0,2) similar -> hard negative weighted by beta = 2; pair (1,2) dissimilar -> weight 1.
    eye = torch.eye(3)
    sim = torch.tensor([[1.0, 1.0, 0.6], [1.0, 1.0, 0.2], [0.6, 0.2, 1.0]])
    comparable = torch.ones(3, 3, dtype=torch.bool)
    loss = AGCLLoss(temperature=1.0, learnable=False, tau_hard=0.5, tau_fn=1.0, beta=2.0)(
        eye, eye, attr_sim=sim, attr_comparable=comparable)  # fmt: skip
    expected = (math.log((E + 2) / E) + math.log((E + 1) / E) + math.log((E + 3) / E)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    w, fn = agcl_weights(sim, comparable, 0.5, 1.0, 2.0)
    assert fn.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    assert w[0, 2].item() == 2.0 and w[1, 2].item() == 1.0 and w[0, 1].item() == 0.0


def test_agcl_false_negatives_as_extra_positives():
    eye = torch.eye(3)
    sim = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    loss = AGCLLoss(temperature=1.0, learnable=False, fn_as_positive=True)(
        eye, eye, attr_sim=sim, attr_comparable=torch.ones(3, 3, dtype=torch.bool))  # fmt: skip
    # rows 0 and 1: numerator e + 1 (own pair + the false negative), denominator e + 1 + 1
    expected = (2 * math.log((E + 2) / (E + 1)) + math.log((E + 2) / E)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("case", ["nothing_comparable", "below_tau_hard"])
def test_agcl_equals_infonce_when_no_pair_shares_attributes(case):
    a, b = _rand(8)
    sim = torch.rand(8, 8, generator=torch.Generator().manual_seed(1))
    comparable = torch.zeros(8, 8, dtype=torch.bool) if case == "nothing_comparable" else torch.ones(8, 8, dtype=torch.bool)
    if case == "below_tau_hard":
        sim = sim * 0.4
    agcl = AGCLLoss(temperature=0.07, learnable=False, tau_hard=0.5)(a, b, attr_sim=sim, attr_comparable=comparable)
    info = InfoNCELoss(temperature=0.07, learnable=False)(a, b)
    assert agcl.item() == pytest.approx(info.item(), rel=1e-6)


def test_masking_a_negative_lowers_the_loss_and_hard_weight_raises_it():
    a, b = _rand(6, seed=3)
    base = weighted_contrastive(a, b, 10.0).item()
    w = torch.ones(6, 6)
    w[0, 1] = w[1, 0] = 0.0
    assert weighted_contrastive(a, b, 10.0, weights=w).item() < base
    w = torch.ones(6, 6)
    w[0, 1] = w[1, 0] = 3.0
    assert weighted_contrastive(a, b, 10.0, weights=w).item() > base


def test_gist_masks_negatives_the_guide_rates_as_close_as_the_positive():
    guide = torch.tensor([[1.0, 0.0], [0.995, 0.0998], [0.0, 1.0]])
    guide = F.normalize(guide, dim=-1)
    mask = gist_mask(guide, guide, margin=0.0)
    assert not mask.diagonal().any()
    assert mask.sum() == 0  # diagonal similarity 1 is the maximum: nothing strictly closer
    mask = gist_mask(guide, guide, margin=0.01)
    assert mask[0, 1] and mask[1, 0] and not mask[0, 2]
    eye = torch.eye(3)
    loss = GISTLoss(temperature=1.0, learnable=False, margin=0.01)(eye, eye, guide_a=guide, guide_b=guide)
    expected = (math.log((E + 1) / E) * 2 + math.log((E + 2) / E)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_oracle_masks_same_product_pairs():
    eye = torch.eye(3)
    loss = OracleLoss(temperature=1.0, learnable=False)(eye, eye, product_ids=torch.tensor([5, 5, -1]))
    expected = (math.log((E + 1) / E) * 2 + math.log((E + 2) / E)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # unknown products (-1) are never treated as the same product
    loss = OracleLoss(temperature=1.0, learnable=False)(eye, eye, product_ids=torch.tensor([-1, -1, -1]))
    assert loss.item() == pytest.approx(InfoNCELoss(1.0, False)(eye, eye).item(), rel=1e-6)
