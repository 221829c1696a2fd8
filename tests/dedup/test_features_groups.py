"""Pair features (codes, brands, prices, attributes), grouping without chaining, the review queue."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from afmrl.dedup.features import ListingView, pair_features
from afmrl.dedup.groups import cluster, group_table, review_queue
from afmrl.dedup.text import code_similarity, codes


def test_codes_join_separators_and_skip_measures():
    assert "wh1000xm3" in codes("sony wh-1000xm3 headphones 40mm 500gb")
    assert not codes("sony headphones 40mm 500gb 2019")
    assert {"em032059d", "em0320"} <= codes("citizen em0320-59d watch")
    assert code_similarity({"wh1000xm3"}, {"wh1000xm3"}) == 1.0
    assert 0.8 < code_similarity({"wh1000xm3"}, {"wh1000xm3b"}) < 1.0
    assert code_similarity({"wh1000xm3"}, {"mdr7506"}) == 0.0
    assert np.isnan(code_similarity(set(), {"mdr7506"}))


def _listings() -> pd.DataFrame:
    rows = [
        ("a", "Sony WH-1000XM3 Wireless Headphones Black", {"brand": "Sony", "colour": "black"}, 300.0),
        ("b", "SONY WH1000XM3 noise cancelling headphones", {"brand": "sony", "colour": "black"}, 290.0),
        ("c", "Sony MDR-7506 Studio Headphones", {"brand": "Sony", "colour": "black"}, 99.0),
        ("d", "Bose QuietComfort 35 II headphones", {"brand": "Bose"}, None),
    ]
    return pd.DataFrame({"listing_id": [r[0] for r in rows], "title": [r[1] for r in rows],
                         "attributes": [json.dumps(r[2]) for r in rows], "price": [r[3] for r in rows],
                         "description": None, "category": None, "currency": None})  # fmt: skip


def test_pair_features_see_codes_brands_prices_and_attributes():
    view = ListingView.build(_listings())
    names = view.feature_names()
    f = dict(zip(names, pair_features(view, np.array([0, 0, 0]), np.array([1, 2, 3])).T, strict=True))
    assert f["code_sim"][0] == 1.0 and f["code_sim"][1] == 0.0 and np.isnan(f["code_sim"][2])
    assert f["brand_equal"][0] == 1.0 and f["brand_equal"][2] == 0.0
    assert f["attr_colour"][0] == 1.0 and np.isnan(f["attr_colour"][2])  # d states no colour
    assert f["price_log_ratio"][0] < 0.05 < f["price_log_ratio"][1] and np.isnan(f["price_log_ratio"][2])
    assert f["title_tfidf"][0] > f["title_tfidf"][2]
    assert np.isnan(f["category_jaccard"]).all()  # no categories: no evidence, not disagreement


def test_average_linkage_does_not_chain_but_components_do():
    # 0-1 and 1-2 are strong links, 0-2 a clear non-match: average linkage keeps 2 out, components chain it
    a, b = np.array([0, 1, 0, 3]), np.array([1, 2, 2, 4])
    s = np.array([0.95, 0.9, 0.05, 0.3])
    avg = cluster(5, a, b, s, 0.5, "average")
    comp = cluster(5, a, b, s, 0.5, "components")
    assert avg[0] == avg[1] != avg[2] and avg[3] != avg[4]
    assert comp[0] == comp[1] == comp[2] and comp[3] != comp[4]
    table = group_table(["p", "q", "r", "s", "t"], avg)
    assert table["group_size"].tolist() == [2, 2, 1, 1, 1] and table["group_id"].nunique() == 4
    review = review_queue(["p", "q", "r", "s", "t"], list("PQRST"), a, b, s, avg, 0.5, 0.25)
    assert set(zip(review["listing_a"], review["listing_b"], strict=True)) == {("q", "r"), ("s", "t")}
    assert review.set_index("listing_a").loc["q", "reason"] == "match kept apart by linkage"


def test_strict_average_needs_evidence_for_every_pair_scored_average_only_the_scored():
    a, b, s = np.array([0, 1]), np.array([1, 2]), np.array([0.95, 0.9])  # 0-2 never a candidate
    strict = cluster(3, a, b, s, 0.5, "average")
    loose = cluster(3, a, b, s, 0.5, "scored_average")
    assert strict[0] == strict[1] != strict[2]  # (0.9 + 0) / 2 < 0.5
    assert loose[0] == loose[1] == loose[2]
