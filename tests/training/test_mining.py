"""Catalogue-wide mined negatives: the mining rule, the losses' extra block, the trainer's use of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from afmrl.catalog import read_catalog
from afmrl.config import load_config
from afmrl.errors import ConfigError
from afmrl.losses import AGCLLoss, GISTLoss, InfoNCELoss
from afmrl.losses.core import weighted_contrastive
from afmrl.models.encoders.dual import DualEncoder
from afmrl.training.data import build_pairs
from afmrl.training.mining import AttributeBonus, cached_mine_negatives, mine_negatives, product_index
from afmrl.training.trainer import ContrastiveTrainer


def test_mining_takes_the_closest_item_of_each_other_product_best_first():
    # pairs 0,1: product 7; pairs 2,3: product 8; pair 4: product 9; pair 5: unknown (a product of its own)
    guide_b = torch.tensor([[1.0, 0], [1, 0.1], [0.9, 0.5], [0.5, 0.9], [0, 1], [0.95, 0.3]])
    guide_a = guide_b.clone()
    products = np.array([7, 7, 8, 8, 9, -1])
    mined = mine_negatives(guide_a, guide_b, products, k=3)
    assert mined.shape == (6, 3)
    for i in range(6):
        got = [j for j in mined[i].tolist() if j >= 0]
        assert all(products[j] != products[i] or products[i] < 0 and j != i for j in got)  # never its own product
        assert len({products[j] if products[j] >= 0 else -10 - j for j in got}) == len(got)  # one per product
        sims = [float(F.normalize(guide_a[i], dim=0) @ F.normalize(guide_b[j], dim=0)) for j in got]
        assert sims == sorted(sims, reverse=True)  # best first
    # row 0 (product 7): product 8's best item is pair 2 (closer to [1, 0] than pair 3), then the unknown pair 5
    assert mined[0].tolist()[:2] == [5, 2]
    # four products: at most three others, so a fourth slot stays empty
    assert (mine_negatives(guide_a, guide_b, products, k=4)[:, 3] == -1).all()
    assert product_index(np.array([5, -1, 5, -1])).tolist() == [0, 1, 0, 2]


def _batch(seed: int = 0, n: int = 6, k: int = 2, d: int = 8):
    g = torch.Generator().manual_seed(seed)
    a, b, neg = (F.normalize(torch.randn(*s, generator=g), dim=-1) for s in ((n, d), (n, d), (n, k, d)))
    return a, b, neg


def test_mined_negatives_join_each_anchors_softmax():
    a, b, neg = _batch()
    scale = 20.0
    loss = weighted_contrastive(a, b, scale, mined=(neg, torch.ones(neg.shape[:2])))
    logits_ab = torch.cat([a @ b.T, torch.einsum("nd,nkd->nk", a, neg)], dim=1) * scale
    want = 0.5 * (F.cross_entropy(logits_ab, torch.arange(6)) + F.cross_entropy((b @ a.T) * scale, torch.arange(6)))
    assert torch.allclose(loss, want, atol=1e-5)
    # weight 0 (an empty slot, a masked false negative) is the same as no mined negative at all
    assert torch.allclose(weighted_contrastive(a, b, scale, mined=(neg, torch.zeros(neg.shape[:2]))),
                          weighted_contrastive(a, b, scale), atol=1e-6)  # fmt: skip
    # InfoNCE with its mined negatives: an empty slot counts nothing
    valid = torch.tensor([[True, False]] * 6)
    got = InfoNCELoss(learnable=False)(a, b, mined_b=neg, mined_valid=valid)
    assert torch.allclose(got, InfoNCELoss(learnable=False)(a, b, mined_b=neg[:, :1]), atol=1e-6)


def test_agcl_weighs_mined_negatives_by_their_attributes():
    a, b, neg = _batch(1)
    w = torch.ones(3)
    codes = torch.tensor([[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4], [5, 5, 5]])
    # slot 0: same key attributes as the anchor (false negative: masked); slot 1: one key differs (hard: beta)
    mined_codes = torch.stack([torch.stack([c, torch.cat([c[:2], c[2:] + 10])]) for c in codes])
    loss = AGCLLoss(learnable=False, tau_hard=0.5, beta=3.0)
    got = loss(a, b, attr_codes=codes, attr_key_weights=w, mined_b=neg, mined_attr_codes=mined_codes)
    scale = loss.temperature()
    want = weighted_contrastive(a, b, scale, mined=(neg, torch.tensor([[0.0, 3.0]] * 6)))
    assert torch.allclose(got, want, atol=1e-6)
    # with nothing in common the mined negatives count once each, like InfoNCE's
    far = torch.full_like(mined_codes, 99)
    plain = loss(a, b, attr_codes=codes, attr_key_weights=w, mined_b=neg, mined_attr_codes=far)
    assert torch.allclose(plain, InfoNCELoss(learnable=False)(a, b, mined_b=neg), atol=1e-6)


def test_gist_masks_the_mined_negatives_its_guide_rates_as_close_as_the_positive():
    a, b, neg = _batch(2)
    guide = F.normalize(torch.randn(6, 4), dim=-1)
    mined_guide = torch.stack([guide, -guide], dim=1)  # slot 0: as close as the positive (masked); slot 1: far
    loss = GISTLoss(learnable=False, margin=0.01)
    got = loss(a, b, guide_a=guide, guide_b=guide, mined_b=neg, mined_guide=mined_guide)
    only_slot1 = loss(a, b, guide_a=guide, guide_b=guide, mined_b=neg[:, 1:], mined_guide=mined_guide[:, 1:])
    assert torch.allclose(got, only_slot1, atol=1e-6)
    assert not torch.allclose(got, loss(a, b, guide_a=guide, guide_b=guide), atol=1e-4)


@pytest.mark.slow
def test_trainer_mines_other_products_and_learns(tmp_path, synth_catalog):
    base = ["tracking.enabled=false", "train.batch_size=16", "train.log_every=10", "encoder.image_size=96",
            "train.steps=40", "train.mined_negatives=3", "train.method=agcl"]  # fmt: skip
    cfg = load_config(None, base)
    catalog = read_catalog(synth_catalog)
    pairs = build_pairs(catalog, ("train",), cfg.encoder, cfg.train)
    trainer = ContrastiveTrainer(DualEncoder(cfg.encoder), pairs, cfg.train, tmp_path / "run",
                                 cache_dir=tmp_path / "cache")  # fmt: skip
    result = trainer.train()
    mined = trainer.mined
    assert mined.shape == (len(pairs), 3) and (mined >= 0).all()
    assert (pairs.products[mined.numpy()] != pairs.products[:, None]).all()  # never the pair's own product
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    full = load_config(None, [*base, "train.mode=full"])
    with pytest.raises(ConfigError, match="mined_negatives|frozen"):
        ContrastiveTrainer(DualEncoder(full.encoder), pairs, full.train, tmp_path / "full").train()


def test_agcl_mining_puts_attribute_near_duplicates_first():
    # the anchor (pair 0) and three other products: pair 1 closest by the guide but unrelated by attributes,
    # pair 2 a near-duplicate (two of three keys agree), pair 3 the same key attributes (a likely false negative)
    guide = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.9, 0.44], [0.8, 0.6]])
    products = np.array([0, 1, 2, 3])
    codes = torch.tensor([[0, 0, 0], [5, 6, 7], [0, 0, 9], [0, 0, 0]])
    plain = mine_negatives(guide, guide, products, k=3)
    assert plain[0].tolist() == [1, 2, 3]  # by the guide alone
    bonus = AttributeBonus(codes, torch.ones(3), bonus=2.0, tau_hard=0.5, tau_fn=1.0, min_shared=2)
    mined = mine_negatives(guide, guide, products, k=3, attributes=bonus)
    assert mined[0].tolist() == [2, 1, 3]  # the near-duplicate first; the same-attributes one gets no bonus


def test_cached_mining_stores_once_per_input_and_returns_the_same(tmp_path):
    torch.manual_seed(0)
    ga, gb = torch.randn(40, 8), torch.randn(40, 8)
    products = np.arange(40) // 2
    codes = torch.randint(-1, 3, (40, 4))
    bonus = AttributeBonus(codes, torch.ones(4), bonus=0.2)
    direct = mine_negatives(ga, gb, products, k=3, attributes=bonus)
    first = cached_mine_negatives(tmp_path, ga, gb, products, 3, attributes=bonus)
    assert torch.equal(first, direct) and len(list(tmp_path.glob("mined-*.npy"))) == 1
    stored = next(tmp_path.glob("mined-*.npy"))
    np.save(stored, np.zeros((40, 3), dtype=np.int64))  # a second call reads the stored result, not mines again
    assert cached_mine_negatives(tmp_path, ga, gb, products, 3, attributes=bonus).abs().sum() == 0
    other = cached_mine_negatives(tmp_path, ga, gb, products, 3, attributes=AttributeBonus(codes, torch.ones(4), 0.5))
    assert len(list(tmp_path.glob("mined-*.npy"))) == 2 and torch.equal(other, mine_negatives(
        ga, gb, products, k=3, attributes=AttributeBonus(codes, torch.ones(4), bonus=0.5)))
    assert torch.equal(cached_mine_negatives(None, ga, gb, products, 3), mine_negatives(ga, gb, products, k=3))
