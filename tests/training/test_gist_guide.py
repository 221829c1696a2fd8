"""GIST's zero-shot guide compares both views of a pair in a space they share (afmrl.training.guide)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from afmrl.config import EncoderConfig, load_config
from afmrl.models.encoders.dual import DualEncoder
from afmrl.training.guide import zero_shot_guides

IMG, TXT = 1280, 384  # EfficientNet-Lite0 and MiniLM widths


@pytest.fixture(scope="module")
def model() -> DualEncoder:
    return DualEncoder(EncoderConfig(dim=32, hidden=64, image_size=64), pretrained_towers=False)


def _feats(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)).abs()


def test_text_pairs_use_each_sides_zero_shot_text_embedding(model):
    title, desc = _feats(5, TXT, 0), _feats(5, TXT, 1)
    ga, gb = zero_shot_guides(model, "text", title, "text", desc)
    torch.testing.assert_close(ga, F.normalize(title, dim=-1))
    torch.testing.assert_close(gb, F.normalize(desc, dim=-1))
    assert (F.cosine_similarity(ga, gb) < 0.999).all()  # the guide's positive similarity is informative


def test_photo_and_listing_compare_the_photo_with_the_listings_image(model):
    photo, listing_img, listing_txt = _feats(4, IMG, 2), _feats(4, IMG, 3), _feats(4, TXT, 4)
    listing_img[2] = float("nan")  # a listing without an image
    listing = torch.cat([listing_img, listing_txt], dim=1)
    ga, gb = zero_shot_guides(model, "image", photo, "listing", listing)
    assert ga.shape == gb.shape == (4, IMG)
    torch.testing.assert_close(ga, F.normalize(photo, dim=-1))
    keep = [0, 1, 3]
    torch.testing.assert_close(gb[keep], F.normalize(listing_img[keep], dim=-1))
    torch.testing.assert_close(gb[2], ga[2])  # no image: the row's other side (nothing of it masked)
    assert not torch.isnan(gb).any()
    # a text against a listing: the text parts; two listings: both parts
    ga, gb = zero_shot_guides(model, "text", listing_txt, "listing", listing)
    assert ga.shape == (4, TXT)
    ga, gb = zero_shot_guides(model, "listing", listing, "listing", listing)
    assert ga.shape == (4, IMG + TXT)
    torch.testing.assert_close(ga, gb)


def test_image_text_pairs_fall_back_to_each_items_own_two_views(model):
    img, txt = _feats(4, IMG, 5), _feats(4, TXT, 6)
    ga, gb = zero_shot_guides(model, "image", img, "text", txt)
    torch.testing.assert_close(ga, gb)
    torch.testing.assert_close(F.cosine_similarity(ga, gb), torch.ones(4))


@pytest.mark.slow
def test_gist_trains_on_text_pairs_with_the_zero_shot_guide(tmp_path, synth_catalog):
    from afmrl.catalog import read_catalog
    from afmrl.training.data import build_pairs
    from afmrl.training.trainer import ContrastiveTrainer

    cfg = load_config(None, ["tracking.enabled=false", "train.batch_size=16", "train.steps=30", "train.log_every=10",
                             "train.method=gist", "train.pairing=title_description", "encoder.head=residual",
                             "encoder.dim=384", "encoder.image_size=64"])  # fmt: skip
    pairs = build_pairs(read_catalog(synth_catalog), ("train",), cfg.encoder, cfg.train)
    trainer = ContrastiveTrainer(DualEncoder(cfg.encoder), pairs, cfg.train, tmp_path / "run", cache_dir=tmp_path / "c")
    result = trainer.train()
    zero_shot = F.normalize(trainer.feats_a, dim=-1)
    torch.testing.assert_close(trainer.guide_a, zero_shot)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
