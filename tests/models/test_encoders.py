"""Every encoder kind behind one interface: shapes, L2 norms, loading by folder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from afmrl.config import EncoderConfig
from afmrl.models.encoders import load_encoder
from afmrl.models.encoders.base import Encoder
from afmrl.models.pretrained import minilm_path


def _check(enc, images, texts):
    assert isinstance(enc, Encoder)
    for arr in (enc.encode_texts(texts), enc.encode_images(images), enc.encode_listings(texts, [images[0], None])):
        assert arr.dtype == np.float32 and arr.shape[1] == enc.dim
        np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, rtol=1e-4)
    a, b = enc.encode_texts(["red mug", "blue bottle"])
    assert not np.allclose(a, b)


@pytest.fixture
def images(synth_catalog):
    return [str(p) for p in sorted((synth_catalog / "images").glob("*.jpg"))[:3]]


def test_dual_encoder_by_folder(tmp_path, images):
    from afmrl.models.encoders.dual import DualEncoder

    DualEncoder(EncoderConfig(dim=32, hidden=64, image_size=64)).save_pretrained(tmp_path / "enc")
    enc = load_encoder(tmp_path / "enc")
    assert enc.dim == 32
    _check(enc, images, ["red mug", "blue bottle"])


def test_hf_clip_from_a_local_folder(tmp_path, images):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tok_src = minilm_path()
    folder = tmp_path / "tiny-clip"
    folder.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(tok_src / f, folder / f)
    cfg = CLIPConfig(text_config={"vocab_size": 30522, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "max_position_embeddings": 64,
                                  "bos_token_id": 101, "eos_token_id": 102, "pad_token_id": 0},  # BERT tokens
                     vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                     projection_dim=16)  # fmt: skip
    CLIPModel(cfg).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    enc = load_encoder(folder, EncoderConfig(kind="clip", max_tokens=32))
    assert enc.dim == 16
    _check(enc, images + [Image.new("RGB", (40, 50), (255, 0, 0))], ["red mug", "blue bottle"])


def test_vlm2vec_last_token_embedder_with_tiny_qwen2_vl(tmp_path, images):
    from afmrl.models.tiny import build_tiny_vlm

    folder = build_tiny_vlm(tmp_path / "tiny-vlm", ["red mug 350 ml", "blue bottle 1 l", "Norvik striped t-shirt"])
    enc = load_encoder(folder, EncoderConfig(kind="vlm2vec", batch_size=2))
    _check(enc, images, ["red mug", "blue bottle"])
