"""encoder.head=residual: x + MLP(x) with the last layer at zero starts exactly at zero-shot MiniLM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from afmrl.config import EncoderConfig, config_from_text
from afmrl.errors import ConfigError
from afmrl.models.encoders import load_encoder
from afmrl.models.encoders.dual import DualEncoder, ProjectionHead, ResidualHead
from afmrl.models.pretrained import resolve_text_model

pytestmark = pytest.mark.slow  # builds the dual encoder's towers three times (~15 s of CPU)
TEXTS = ["Samsung Galaxy S21 128GB phantom black", "Apple iPhone 13 mini", "organic whole milk 1 l"]


@pytest.fixture(scope="module")
def residual() -> DualEncoder:
    torch.manual_seed(0)
    return DualEncoder(EncoderConfig(head="residual", dim=384, hidden=64, image_size=64)).eval()


def test_untrained_residual_head_embeds_texts_as_zero_shot_minilm(residual):
    from sentence_transformers import SentenceTransformer

    zero_shot = SentenceTransformer(resolve_text_model("all-MiniLM-L6-v2"), device="cpu")
    expected = zero_shot.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(residual.encode_texts(TEXTS), expected, atol=1e-5)
    assert isinstance(residual.text_head, ResidualHead)
    assert isinstance(residual.image_head, ProjectionHead) and not isinstance(residual.image_head, ResidualHead)
    # an MLP head does not start there
    torch.manual_seed(0)
    with torch.no_grad():
        mlp = torch.nn.functional.normalize(ProjectionHead(384, 64, 384)(torch.from_numpy(residual.text_backbone(TEXTS))))
    assert np.abs(mlp.numpy() - expected).max() > 0.1


def test_residual_head_trains_and_round_trips(tmp_path, residual):
    feats = torch.randn(4, 384)
    out = residual.text_head(feats)
    torch.testing.assert_close(out, feats)  # the identity at the start
    out.pow(2).sum().backward()
    assert residual.text_head.net[-1].weight.grad.abs().sum() > 0  # the zero layer learns
    residual.zero_grad()
    with torch.no_grad():
        residual.text_head.net[-1].weight.normal_(std=0.02)  # as if trained
    residual.save_pretrained(tmp_path / "enc")
    loaded = load_encoder(tmp_path / "enc")
    assert loaded.cfg.head == "residual" and isinstance(loaded.text_head, ResidualHead)
    np.testing.assert_allclose(loaded.encode_texts(TEXTS), residual.encode_texts(TEXTS), atol=1e-6)


def test_residual_head_needs_dim_equal_to_a_tower_width():
    with pytest.raises(ConfigError) as exc:
        DualEncoder(EncoderConfig(head="residual", dim=256))
    assert exc.value.field == "encoder.dim" and "encoder.head=residual" in str(exc.value) and "384" in str(exc.value)
    assert "1280" in str(exc.value)
    assert config_from_text("encoder:\n  head: residual\n  dim: 384\n").encoder.head == "residual"


def test_image_width_residual_with_residual_fusion_starts_a_listing_at_its_image(tmp_path):
    """dim 1280 (EfficientNet-Lite0's width): photos start at their zero-shot image features and a catalogue listing
    (image + text) starts at its image's embedding (fusion residual: image + m * text, m = 0), so photo -> catalogue
    search starts at zero-shot image search; the text's share m learns."""
    from PIL import Image

    torch.manual_seed(0)
    enc = DualEncoder(EncoderConfig(head="residual", dim=1280, hidden=64, image_size=64, fusion="residual")).eval()
    assert isinstance(enc.image_head, ResidualHead) and not isinstance(enc.text_head, ResidualHead)
    paths = []
    for i, colour in enumerate(["red", "green"]):
        paths.append(tmp_path / f"{i}.jpg")
        Image.new("RGB", (64, 64), colour).save(paths[-1])
    zero_shot = torch.nn.functional.normalize(torch.from_numpy(enc.image_backbone(paths)), dim=-1).numpy()
    np.testing.assert_allclose(enc.encode_images(paths), zero_shot, atol=1e-6)
    np.testing.assert_allclose(enc.encode_listings(["red thing", "green thing"], paths), zero_shot, atol=1e-6)
    texts_only = enc.encode_listings(["red thing", "green thing"], [None, None])  # no image: the text alone
    np.testing.assert_allclose(texts_only, enc.encode_texts(["red thing", "green thing"]), atol=1e-6)
    img, txt = torch.from_numpy(zero_shot), torch.from_numpy(enc.encode_texts(["a", "b"]))
    enc.fuse(img, txt).sum().backward()
    assert enc.text_mix.grad is not None and enc.text_mix.grad.abs().item() > 0
    assert "text_mix" in enc.trainable_state() and any(p is enc.text_mix for p in enc.head_parameters())
