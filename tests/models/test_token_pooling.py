"""encoder.text_pooling=attention: a learned weight per token, uniform at the start (mean pooling = zero-shot
MiniLM), trained on the frozen-mode cache of every token's features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from afmrl.config import EncoderConfig, load_config
from afmrl.models.encoders import load_encoder
from afmrl.models.encoders.dual import DualEncoder, TokenPooling
from afmrl.models.features import tower_features

pytestmark = pytest.mark.slow  # builds the dual encoder's towers (~10 s of CPU)
TEXTS = ["Sony WH-1000XM3 wireless headphones black", "Sony WH-1000XM4 wireless headphones black", "milk 1 l"]


@pytest.fixture(scope="module")
def pooled() -> DualEncoder:
    torch.manual_seed(0)
    return DualEncoder(EncoderConfig(head="residual", dim=384, hidden=64, image_size=64, max_tokens=32,
                                     text_pooling="attention")).eval()  # fmt: skip


def test_untrained_attention_pooling_is_the_zero_shot_mean(pooled, tmp_path):
    mean = DualEncoder(EncoderConfig(head="residual", dim=384, hidden=64, image_size=64, max_tokens=32)).eval()
    np.testing.assert_allclose(pooled.encode_texts(TEXTS), mean.encode_texts(TEXTS), atol=1e-5)
    feats = tower_features(pooled, "text", TEXTS, tmp_path / "cache")  # every token, float16, padded to 32
    assert feats.dtype == np.float16 and feats.shape == (3, 32 * 384)
    assert list((tmp_path / "cache").glob("text-*-32-tokens.npz"))  # its own cache file, apart from mean features
    zero_shot = F.normalize(pooled.zero_shot_texts(torch.from_numpy(feats)), dim=-1)
    torch.testing.assert_close(zero_shot, torch.from_numpy(mean.encode_texts(TEXTS)), atol=2e-3, rtol=0)


def test_token_weights_learn_and_round_trip(pooled, tmp_path):
    pool = TokenPooling(4)
    feats = torch.tensor([[1.0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]])  # two tokens and a padding row
    torch.testing.assert_close(pool(feats), torch.tensor([[0.5, 0.5, 0, 0]]))  # mean of the real tokens only
    with torch.no_grad():
        pool.score.weight.copy_(torch.tensor([[10.0, 0, 0, 0]]))  # a score that picks the first token
    assert pool(feats)[0, 0] > 0.99
    with torch.no_grad():
        pooled.text_pool.score.weight.normal_(std=0.5)  # as if trained
    assert any(p is pooled.text_pool.score.weight for p in pooled.head_parameters())
    pooled.save_pretrained(tmp_path / "enc")
    loaded = load_encoder(tmp_path / "enc")
    assert loaded.cfg.text_pooling == "attention"
    np.testing.assert_allclose(loaded.encode_texts(TEXTS), pooled.encode_texts(TEXTS), atol=1e-5)


def test_agcl_trains_token_pooling_with_the_zero_shot_guide(tmp_path, synth_catalog):
    from afmrl.catalog import read_catalog
    from afmrl.training.data import build_pairs
    from afmrl.training.trainer import ContrastiveTrainer

    cfg = load_config(None, ["tracking.enabled=false", "train.batch_size=16", "train.steps=30", "train.log_every=10",
                             "train.method=agcl", "train.agcl_guide=true", "train.mined_negatives=2",
                             "train.guide_spares=[capacity,size,model]",
                             "train.pairing=title_description", "encoder.head=residual", "encoder.dim=384",
                             "encoder.image_size=64", "encoder.max_tokens=32", "encoder.text_pooling=attention"])
    pairs = build_pairs(read_catalog(synth_catalog), ("train",), cfg.encoder, cfg.train)
    model = DualEncoder(cfg.encoder)
    bad = cfg.train.model_copy(update={"guide_spares": ["model", "weight"]})
    with pytest.raises(ValueError, match=r"guide_spares.*\['weight'\]"):
        ContrastiveTrainer(model, pairs, bad, tmp_path / "bad")
    trainer = ContrastiveTrainer(model, pairs, cfg.train, tmp_path / "run", cache_dir=tmp_path / "c")
    result = trainer.train()
    assert int(trainer.spare_keys.sum()) == 3  # capacity, size and model spared from the guide's masks
    assert trainer.loss_extras(torch.arange(4))["attr_spare_keys"] is trainer.spare_keys
    assert trainer.feats_a.dtype == torch.float16 and trainer.feats_a.shape[1] == 32 * 384
    torch.testing.assert_close(trainer.guide_a, F.normalize(model.zero_shot_texts(trainer.feats_a), dim=-1))
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert model.text_pool.score.weight.abs().max() > 0  # the token weights moved
