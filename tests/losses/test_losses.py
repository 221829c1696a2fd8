from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from afmrl.attributes.similarity import similarity_from_codes
from afmrl.losses import AGCLLoss, GISTLoss, InfoNCELoss, OracleLoss, agcl_weights, weighted_contrastive
from afmrl.losses.core import weighted_contrastive_blocks
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
    guide = F.normalize(torch.tensor([[1.0, 0.0], [0.995, 0.0998], [0.0, 1.0]]), dim=-1)
    pos = torch.ones(3)  # guided anchor-positive similarity: the guide sees both sides alike
    assert gist_mask(guide, guide, pos, margin=0.0).sum() == 0  # nothing strictly closer than 1
    mask = gist_mask(guide, guide, pos, margin=0.01)
    assert mask[0, 1] and mask[1, 0] and not mask[0, 2] and mask.diagonal().all()
    # relative margin, as sentence-transformers: threshold g_i - |g_i| * margin
    # (g = -0.6 against g_i = -0.5: masked under -0.5 - 0.25, not under g_i * (1 - margin) = -0.25)
    assert gist_mask(torch.tensor([[1.0, 0.0]]), torch.tensor([[-0.6, 0.8]]), torch.tensor([-0.5]), margin=0.5,
                     strategy="relative").item()  # fmt: skip
    # a = b = identity, tau = 1: each anchor's candidates are a_i.b_j, a_i.a_j, b_i.b_j (self-similarities out);
    # rows 0 and 1 lose each other in all three blocks, row 2 keeps its six negatives
    eye = torch.eye(3)
    loss = GISTLoss(temperature=1.0, learnable=False, margin=0.01)(eye, eye, guide_a=guide, guide_b=guide)
    expected = (2 * math.log((E + 3) / E) + math.log((E + 6) / E)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss = GISTLoss(temperature=1.0, learnable=False, margin=0.0)(eye, eye, guide_a=guide, guide_b=guide)
    assert loss.item() == pytest.approx(math.log((E + 6) / E), rel=1e-6)


def test_gist_is_one_directional_and_never_masks_the_true_positive():
    a, b = _rand(6, seed=4)
    g = F.normalize(torch.randn(6, 5, generator=torch.Generator().manual_seed(5)), dim=-1)
    gist = GISTLoss(temperature=0.1, learnable=False, margin=2.0)  # every candidate masked but the positive
    assert gist(a, b, guide_a=g, guide_b=g).item() == pytest.approx(0.0, abs=1e-6)
    swapped = GISTLoss(temperature=0.1, learnable=False)(b, a, guide_a=g, guide_b=g)
    assert abs(GISTLoss(temperature=0.1, learnable=False)(a, b, guide_a=g, guide_b=g).item() - swapped.item()) > 1e-4


def test_weighted_positives_of_weight_one_and_no_intra_terms_equal_the_core_loss():
    a, b = _rand(7, seed=6)
    gen = torch.Generator().manual_seed(7)
    w = torch.rand(7, 7, generator=gen) * 2
    pos = torch.rand(7, 7, generator=gen) > 0.8
    ref = weighted_contrastive(a, b, 10.0, weights=w, positives=pos)
    got = weighted_contrastive_blocks(a, b, 10.0, weights=w, positive_weights=pos.float())
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)


def _agcl_case(**kw):
    eye = torch.eye(3)
    sim = torch.tensor([[1.0, 1.0, 0.6], [1.0, 1.0, 0.2], [0.6, 0.2, 1.0]])  # (0,1) false negative, (0,2) hard
    loss = AGCLLoss(temperature=1.0, learnable=False, tau_hard=0.5, tau_fn=1.0, beta=2.0, **kw)
    return loss(eye, eye, attr_sim=sim, attr_comparable=torch.ones(3, 3, dtype=torch.bool)).item()


def test_agcl_weighted_positives():
    # rows 0 and 1: numerator e + 0.5 (the false negative at weight 0.5); negatives: row 0 (0,2) at beta 2, row 1 (1,2)
    expected = (math.log((E + 2.5) / (E + 0.5)) + math.log((E + 1.5) / (E + 0.5)) + math.log((E + 3) / E)) / 3
    assert _agcl_case(fn_as_positive=True, positive_weight=0.5) == pytest.approx(expected, rel=1e-6)
    # weight 1 is today's fn_as_positive; without fn_as_positive the weight changes nothing
    full = (math.log((E + 3) / (E + 1)) + math.log((E + 2) / (E + 1)) + math.log((E + 3) / E)) / 3
    assert _agcl_case(fn_as_positive=True, positive_weight=1.0) == pytest.approx(full, rel=1e-6)
    assert _agcl_case(positive_weight=0.5) == _agcl_case()
    with pytest.raises(ValueError, match="positive_weight"):
        AGCLLoss(positive_weight=0.0)


def test_agcl_intra_modal_terms_carry_the_attribute_weights():
    # a = b = identity: each intra-modal candidate adds w_ij * e^0 to the denominator (false negative masked,
    # hard negative at beta); the cross block as in the hand-computed case
    expected = (math.log((E + 4) / E) + math.log((E + 2) / E) + math.log((E + 6) / E)) / 3
    assert _agcl_case(intra_modal=True) == pytest.approx(expected, rel=1e-6)
    # with weighted positives, the other view's false negative is a positive in both blocks
    expected = (math.log((E + 5) / (E + 1)) + math.log((E + 3) / (E + 1)) + math.log((E + 6) / E)) / 3
    assert _agcl_case(intra_modal=True, fn_as_positive=True, positive_weight=0.5) == pytest.approx(expected, rel=1e-6)


def test_agcl_defaults_keep_the_loss_as_it_was():
    a, b = _rand(8, seed=8)
    codes = torch.tensor([[0, 0, 0], [0, 0, 0], [1, 1, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3], [0, 0, 1], [4, -1, 4]])
    kw = {"attr_codes": codes, "attr_key_weights": torch.ones(3)}
    default = AGCLLoss(temperature=0.1, learnable=False)(a, b, **kw)
    sim, comparable = similarity_from_codes(codes, torch.ones(3), 2)
    w, _ = agcl_weights(sim, comparable, 0.5, 1.0, 2.0)
    assert torch.equal(default, weighted_contrastive(a, b, AGCLLoss(0.1, False).temperature(), weights=w))
    assert not torch.equal(default, AGCLLoss(temperature=0.1, learnable=False, intra_modal=True)(a, b, **kw))


def test_oracle_masks_same_product_pairs():
    eye = torch.eye(3)
    loss = OracleLoss(temperature=1.0, learnable=False)(eye, eye, product_ids=torch.tensor([5, 5, -1]))
    expected = (math.log((E + 1) / E) * 2 + math.log((E + 2) / E)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # unknown products (-1) are never treated as the same product
    loss = OracleLoss(temperature=1.0, learnable=False)(eye, eye, product_ids=torch.tensor([-1, -1, -1]))
    assert loss.item() == pytest.approx(InfoNCELoss(1.0, False)(eye, eye).item(), rel=1e-6)


def test_agcl_guided_masks_what_the_guide_rates_closer_than_the_positive():
    a, b = _rand(4, seed=9)
    guide = F.normalize(torch.tensor([[1.0, 0.0], [0.995, 0.0998], [0.0, 1.0], [-1.0, 0.2]]), dim=-1)
    none = torch.zeros(4, 4, dtype=torch.bool)
    loss = AGCLLoss(temperature=0.1, learnable=False, guide_margin=0.01)(
        a, b, attr_sim=torch.zeros(4, 4), attr_comparable=none, guide_a=guide, guide_b=guide)  # fmt: skip
    w = torch.ones(4, 4)
    w[0, 1] = w[1, 0] = 0.0  # the guide's near-duplicates (0, 1); the rest as InfoNCE
    assert loss.item() == pytest.approx(weighted_contrastive(a, b, 10.0, weights=w).item(), rel=1e-5)
    assert loss.item() != pytest.approx(InfoNCELoss(0.1, False)(a, b).item(), rel=1e-4)
    with pytest.raises(ValueError, match="guide_a"):
        AGCLLoss(guide_margin=0.0)(a, b, attr_sim=torch.zeros(4, 4), attr_comparable=none)


def test_agcl_guide_spares_the_near_duplicates_the_attributes_tell_apart():
    """With ``attr_spare_keys`` the guide's mask of (0, 1) is lifted when the two state different values of
    a spared key (columns: brand, capacity): they differ in capacity, so they stay negatives, weighted beta
    as AGCL's hard negatives; a difference in a key not spared leaves the guide's mask."""
    a, b = _rand(4, seed=9)
    guide = F.normalize(torch.tensor([[1.0, 0.0], [0.995, 0.0998], [0.0, 1.0], [-1.0, 0.2]]), dim=-1)
    codes = torch.tensor([[0, 0, 5], [0, 1, 5], [1, 2, -1], [2, -1, -1]])  # brand, capacity, model
    kw = torch.ones(3)
    loss = AGCLLoss(temperature=0.1, learnable=False, guide_margin=0.01, beta=2.0, tau_hard=0.5)
    spare = loss(a, b, attr_codes=codes, attr_key_weights=kw, guide_a=guide, guide_b=guide,
                 attr_spare_keys=torch.tensor([False, True, False]))  # fmt: skip
    w = torch.ones(4, 4)
    w[0, 1] = w[1, 0] = 2.0  # 2 of 3 shared keys agree: a hard negative, kept and weighted up
    assert spare.item() == pytest.approx(weighted_contrastive(a, b, 10.0, weights=w).item(), rel=1e-5)
    masked = loss(a, b, attr_codes=codes, attr_key_weights=kw, guide_a=guide, guide_b=guide,
                  attr_spare_keys=torch.tensor([True, False, True]))  # fmt: skip
    w[0, 1] = w[1, 0] = 0.0  # they agree on brand and model: the guide's mask stands
    assert masked.item() == pytest.approx(weighted_contrastive(a, b, 10.0, weights=w).item(), rel=1e-5)
    # mined negatives: anchor 0's one mined negative is item 1 (differs in capacity), spared too
    mined = dict(mined_b=b[1:2][None], mined_attr_codes=codes[1:2][None], mined_valid=torch.ones(1, 1, dtype=torch.bool),
                 mined_guide=guide[1:2][None])  # fmt: skip
    kept = AGCLLoss(guide_margin=0.01)._mined_weights(codes[:1], kw, mined["mined_attr_codes"], mined["mined_valid"],
                                                     guide[:1], guide[:1], mined["mined_guide"],
                                                     torch.tensor([False, True, False]))  # fmt: skip
    gone = AGCLLoss(guide_margin=0.01)._mined_weights(codes[:1], kw, mined["mined_attr_codes"], mined["mined_valid"],
                                                     guide[:1], guide[:1], mined["mined_guide"])  # fmt: skip
    assert kept.item() == 2.0 and gone.item() == 0.0
