from __future__ import annotations

import numpy as np
import pytest

from afmrl.attributes.schema import enhanced_text
from afmrl.models.encoders.backbone import BackboneEncoder
from afmrl.training.rewards import (
    FormatReward,
    Gallery,
    QueryListing,
    RetrievalReward,
    RewardStats,
    retrieval_score,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoder():
    return BackboneEncoder()  # the real packaged MiniLM (texts); frozen


# near-duplicate products that differ in one attribute each: the title alone cannot tell them apart
GALLERY = [
    ("g1", "p-red-glass", "Norvik bottle | brand: norvik; colour: red; material: glass; size: 1 l"),
    ("g2", "p-blue-glass", "Norvik bottle | brand: norvik; colour: blue; material: glass; size: 1 l"),
    ("g3", "p-red-plastic", "Norvik bottle | brand: norvik; colour: red; material: plastic; size: 1 l"),
    ("g4", "p-red-glass-small", "Norvik bottle | brand: norvik; colour: red; material: glass; size: 330 ml"),
    ("g5", "p-green-steel", "Norvik bottle | brand: norvik; colour: green; material: steel; size: 750 ml"),
    ("g6", "p-mug", "Orvo mug | brand: orvo; colour: red; material: ceramic; size: 350 ml"),
]


@pytest.fixture(scope="module")
def reward(encoder):
    gallery = Gallery.build(encoder, [g[0] for g in GALLERY], [g[1] for g in GALLERY],
                            texts=[g[2] for g in GALLERY], modality="text")  # fmt: skip
    queries = {"q1": QueryListing("q1", "Norvik bottle", "p-red-glass"),
               "q2": QueryListing("q2", "Norvik bottle", "p-green-steel")}  # fmt: skip
    return RetrievalReward(encoder, gallery, queries, target="product", margin_weight=0.5, stats=RewardStats())


def test_identifying_attributes_beat_wrong_ones_which_beat_none(reward):
    right = {"brand": "Norvik", "colour": "red", "material": "glass", "size": "1000 ml"}
    wrong = {"brand": "Norvik", "colour": "blue", "material": "plastic", "size": "330 ml"}
    r_right = reward.score_attributes("q1", right)
    r_wrong = reward.score_attributes("q1", wrong)
    r_none = reward.score_attributes("q1", {})
    assert r_none == reward.invalid_reward < -1.0  # no attributes: below any parseable answer
    assert r_right > 0.0 > r_wrong > r_none
    assert -1.0 <= r_wrong and r_right <= 1.0  # parseable answers are clipped to [-1, 1]
    # graded: getting more of them right earns more
    partial = reward.score_attributes("q1", {"colour": "red", "material": "glass"})
    assert r_right > partial > r_wrong
    # the other query's target is another product: its right attributes are the green steel ones
    assert reward.score_attributes("q2", {"colour": "green", "material": "steel"}) > reward.score_attributes(
        "q2", {"colour": "red", "material": "glass"}
    )


def test_trl_signature_with_completions(reward):
    completions = [
        [{"role": "assistant", "content": '{"brand": "norvik", "colour": "red", "material": "glass", "size": "1 l"}'}],
        [{"role": "assistant", "content": '{"brand": "norvik", "colour": "blue", "material": "plastic"}'}],
        [{"role": "assistant", "content": "I don't know"}],
    ]
    out = reward(prompts=[None] * 3, completions=completions, listing_id=["q1"] * 3, image=[None] * 3)
    assert len(out) == 3 and out[0] > 0.0 > out[1] > out[2] == reward.invalid_reward
    stats = reward.stats.pop_means()
    assert stats["rar/rr_with_attributes"] >= stats["rar/rr_without_attributes"] - 1e-9
    assert reward.stats.pop_means() == {}  # popped


def test_retrieval_score_by_hand():
    sims = np.array([0.9, 0.8, 0.95, 0.1])
    score, rr, margin = retrieval_score(sims, targets=[1], exclude=[], margin_weight=0.5)
    assert rr == pytest.approx(1 / 3) and margin == pytest.approx(0.8 - 0.95)
    assert score == pytest.approx(1 / 3 + 0.5 * (0.8 - 0.95))
    # the listing itself (row 2) excluded, two targets: the best one counts
    score, rr, margin = retrieval_score(sims, targets=[1, 3], exclude=[2], margin_weight=0.0)
    assert rr == pytest.approx(1 / 2) and score == rr
    with pytest.raises(ValueError):
        retrieval_score(sims, targets=[])


def test_gallery_targets_self_and_product():
    g = Gallery(np.eye(4, dtype=np.float32), ["a", "b", "c", "d"], ["p", "p", "q", None])
    assert g.targets("a", "p", "product") == ([1], [0])  # the listing never retrieves itself
    assert g.targets("a", "p", "self") == ([0], [])
    assert g.targets("d", None, "product") == ([], [3])
    assert g.targets("zz", "q", "product") == ([2], [])


def test_self_target_with_an_image_gallery(encoder, synth_catalog):
    from afmrl.catalog import read_catalog

    cat = read_catalog(synth_catalog)
    rows = cat.listings.head(4)
    images = [cat.image_path(p) for p in rows["image"]]
    g = Gallery.build(encoder, list(rows["listing_id"]), list(rows["product_id"]), images=images, modality="image")
    assert g.embeddings.shape == (4, encoder.dim)
    assert np.allclose(np.linalg.norm(g.embeddings, axis=1), 1.0, atol=1e-5)
    lid = rows["listing_id"].iloc[0]
    r = RetrievalReward(encoder, g, {lid: QueryListing(lid, rows["title"].iloc[0])}, target="self")
    assert r.scorable(lid)
    assert isinstance(r.score_attributes(lid, {"colour": "red"}), float)


def test_format_reward_is_graded():
    f = FormatReward(stats=RewardStats(), keys=["brand", "colour"])
    texts = [
        '{"brand": "norvik", "colour": "red"}',  # strict, all typed schema keys, every prompt key answered
        '{"brand": "norvik", "colour": "red", "foo": "x"}',  # an unknown key
        '{"brand": "norvik", "colour": 7}',  # a number coerced
        'Here: {"brand": "norvik", "colour": "red"} ok',  # prose around
        "brand: norvik\ncolour: red",  # not JSON
        "nonsense",
    ]
    scores = f(prompts=[None] * len(texts), completions=[[{"role": "assistant", "content": t}] for t in texts])
    assert scores[0] == 1.0
    assert scores[0] > scores[1] > scores[4] > scores[5] == 0.0
    assert scores[0] > scores[2] and scores[0] > scores[3] > scores[4]
    assert f.stats.pop_means()["rar/valid_json_rate"] == pytest.approx(4 / 6)


def test_enhanced_text_is_what_the_reward_embeds(reward):
    attrs = {"colour": "red", "material": "glass"}
    text = enhanced_text("Norvik bottle", attrs)
    got = reward.score_attributes("q1", attrs)
    assert text in reward._text_cache  # the title + serialised attributes were embedded ...
    base_score, _ = reward.baseline("q1")
    score, _ = reward._score("q1", reward.encoder.encode_texts([text])[0])
    assert got == pytest.approx(score - base_score, abs=1e-6)  # ... and scored against the title alone


def test_format_reward_cannot_be_farmed_by_short_answers():
    keys = ["brand", "colour", "material", "size"]
    f = FormatReward(keys=keys)
    full, _ = f.score('{"brand": "norvik", "colour": "red", "material": "glass", "size": "1 l"}')
    one, _ = f.score('{"brand": "norvik"}')
    empty, valid = f.score("{}")
    assert full == pytest.approx(1.0) and one == pytest.approx(0.25) and empty == 0.0 and valid
    assert full > one > empty  # the share of the prompt's keys answered scales it


@pytest.mark.parametrize("bad", ["{}", "", "I don't know", '{"brand": ', "null", '{"foo": "bar"}'])
def test_empty_or_unparseable_total_is_below_any_answer_with_one_key_right(reward, bad):
    """Total = retrieval + 0.2 x format (the defaults): an empty or unparseable answer is below even the
    worst parseable answer with one key right, and below a wrong one: `{}` is no safe policy."""
    keys = ["brand", "colour", "material", "size"]
    fmt = FormatReward(keys=keys)

    def total(text: str) -> float:
        comp = [[{"role": "assistant", "content": text}]]
        return reward(None, comp, listing_id=["q1"])[0] + 0.2 * fmt(None, comp)[0]

    bad_total = total(bad)
    one_right = [total('{"colour": "red"}'), total('{"material": "glass"}'),
                 total('{"brand": "norvik", "colour": "blue", "material": "plastic", "size": "330 ml"}')]
    wrong = total('{"colour": "blue", "material": "plastic"}')
    assert bad_total <= reward.invalid_reward + 1e-9
    assert all(t > bad_total for t in one_right) and wrong > bad_total
    # the bound holds for any parseable answer: its retrieval part is clipped to [-1, 1], format >= 0
    assert reward.invalid_reward + 0.2 * 1.0 < -1.0 + 0.0


def test_photo_on_the_query_side_is_fused_with_the_text(encoder, synth_catalog):
    """A listing with a photo is queried as photo + enhanced text (the encoder's fusion), computed once."""
    from afmrl.catalog import read_catalog
    from afmrl.config import EncoderConfig
    from afmrl.models.encoders.dual import DualEncoder

    enc = DualEncoder(EncoderConfig())
    enc.eval()
    cat = read_catalog(synth_catalog)
    rows = cat.listings.head(6)
    images = [cat.image_path(p) for p in rows["image"]]
    g = Gallery.build(enc, list(rows["listing_id"]), list(rows["product_id"]), texts=list(rows["title"]),
                      images=images, modality="listing")
    lid, pid = rows["listing_id"].iloc[0], rows["product_id"].iloc[0]
    q = {lid: QueryListing(lid, rows["title"].iloc[0], pid, images[0])}
    fused = RetrievalReward(enc, g, q, target="self", query_modality="auto")
    text_only = RetrievalReward(enc, g, q, target="self", query_modality="text")
    assert fused.uses_photo(lid) and not text_only.uses_photo(lid)
    want = enc.encode_listings([enhanced_text(rows["title"].iloc[0], {"colour": "red"})], [images[0]])[0]
    got = fused._query(lid, enhanced_text(rows["title"].iloc[0], {"colour": "red"}))
    assert np.allclose(got, want, atol=1e-5)
    assert not np.allclose(got, text_only._query(lid, enhanced_text(rows["title"].iloc[0], {"colour": "red"})))
    assert list(fused._image_cache) == [lid]  # the photo embedded once


def test_group_spread_of_the_weighted_total():
    s = RewardStats({"retrieval": 1.0, "format": 0.5})
    s.add_rewards("retrieval", ["a", "a", "b", "b"], [0.0, 1.0, 0.3, 0.3])
    s.add_rewards("format", ["a", "a", "b", "b"], [0.0, 0.0, 0.2, 0.2])
    got = s.pop_means()["rar/reward_group_std"]
    assert got == pytest.approx((np.std([0.0, 1.0], ddof=1) + 0.0) / 2)  # group b has no spread
    assert s.pop_means() == {}
