"""Our losses equal sentence-transformers' on the same embeddings.

Real SentenceTransformer models built from the packaged all-MiniLM-L6-v2: the guide is MiniLM as
shipped, the trained model MiniLM + a Dense layer + Normalize (so model and guide differ). Each
sentence-transformers loss runs on the tokenized texts (it calls the models itself); ours runs on the
embeddings those same models give for the same tokens.
"""

from __future__ import annotations

import pytest
import torch

from afmrl.losses import GISTLoss, InfoNCELoss
from afmrl.losses.gist import gist_mask

st = pytest.importorskip("sentence_transformers")
from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss, MultipleNegativesRankingLoss  # noqa: E402
from sentence_transformers.sentence_transformer.modules import Dense, Normalize  # noqa: E402

from afmrl.models.pretrained import resolve_text_model  # noqa: E402

pytestmark = pytest.mark.slow  # two MiniLM SentenceTransformers and sentence-transformers' import: ~20 s of CPU

# near-duplicate products next to each other, so the guide has false negatives to mask
ANCHORS = ["Samsung Galaxy S21 128GB black", "Samsung Galaxy S21 256GB black", "Apple iPhone 13 mini 128GB",
           "Apple iPhone 13 128GB", "Sony WH-1000XM4 wireless headphones", "Sony WH-1000XM5 wireless headphones",
           "Logitech MX Master 3 mouse", "Kingston 32GB USB stick"]  # fmt: skip
POSITIVES = ["Galaxy S21 smartphone, 128 GB, phantom black", "Galaxy S21 smartphone, 256 GB, phantom black",
             "iPhone 13 mini with 128 GB storage", "iPhone 13 with 128 GB storage",
             "Noise cancelling over-ear headphones XM4", "Noise cancelling over-ear headphones XM5",
             "Wireless ergonomic mouse MX Master 3", "DataTraveler USB flash drive 32 GB"]  # fmt: skip


@pytest.fixture(scope="module")
def models() -> tuple[SentenceTransformer, SentenceTransformer]:
    path = resolve_text_model("all-MiniLM-L6-v2")
    guide = SentenceTransformer(path, device="cpu")
    torch.manual_seed(0)
    model = SentenceTransformer(path, device="cpu")
    model.append(Dense(384, 64))
    model.append(Normalize())
    return model.eval(), guide.eval()


def _embed(model: SentenceTransformer, features: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(dict(features))["sentence_embedding"]


@pytest.fixture(scope="module")
def batch(models):
    model, guide = models
    features = [model.preprocess(ANCHORS), model.preprocess(POSITIVES)]
    emb = [_embed(model, f) for f in features]
    guides = [_embed(guide, f) for f in features]
    return features, emb, guides


def test_symmetric_infonce_equals_multiple_negatives_ranking_in_both_directions(models, batch):
    model, _ = models
    features, (a, b), _ = batch
    st_loss = MultipleNegativesRankingLoss(model, scale=20.0, directions=("query_to_doc", "doc_to_query"),
                                           partition_mode="per_direction")  # fmt: skip
    with torch.no_grad():
        expected = st_loss([dict(f) for f in features], None)
    ours = InfoNCELoss(temperature=1 / 20.0, learnable=False)(a, b)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    one_way = MultipleNegativesRankingLoss(model, scale=20.0)
    with torch.no_grad():
        assert abs(float(one_way([dict(f) for f in features], None)) - float(expected)) > 1e-4  # directions matter


@pytest.mark.parametrize(("strategy", "margin"), [("absolute", 0.0), ("absolute", 0.1), ("relative", 0.2)])
def test_gist_equals_sentence_transformers_gist_embed_loss(models, batch, strategy, margin):
    model, guide = models
    features, (a, b), (ga, gb) = batch
    st_loss = GISTEmbedLoss(model, guide, temperature=0.05, margin_strategy=strategy, margin=margin,
                            contrast_anchors=True, contrast_positives=True)  # fmt: skip
    with torch.no_grad():
        expected = st_loss([dict(f) for f in features], None)
    ours = GISTLoss(temperature=0.05, learnable=False, margin=margin, strategy=strategy)(a, b, guide_a=ga, guide_b=gb)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    # the guide really masks in-batch candidates (in the cross and the intra blocks), so the equality covers it
    pos = torch.nn.functional.cosine_similarity(ga, gb)
    masked = sum(int((gist_mask(r, c, pos, margin, strategy) & ~torch.eye(8, dtype=torch.bool)).sum())
                 for r, c in ((ga, gb), (ga, ga), (gb, gb)))  # fmt: skip
    assert masked > 0


def test_gist_at_sentence_transformers_default_temperature(models, batch):
    model, guide = models
    features, (a, b), (ga, gb) = batch
    st_loss = GISTEmbedLoss(model, guide)  # temperature 0.01, absolute margin 0
    with torch.no_grad():
        expected = st_loss([dict(f) for f in features], None)
    ours = GISTLoss(temperature=0.01, learnable=False)(a, b, guide_a=ga, guide_b=gb)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    # and not InfoNCE's one-directional loss: the intra-modal blocks and the guide's masks change it
    plain = torch.nn.functional.cross_entropy(a @ b.T / 0.01, torch.arange(8))
    assert abs(float(plain) - float(expected)) > 1e-3
