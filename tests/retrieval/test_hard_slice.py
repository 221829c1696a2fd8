"""The hard slice: queries whose gallery holds another product that differs in exactly one key attribute."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from afmrl.catalog.splits import eval_roles
from afmrl.errors import DataError
from afmrl.retrieval.embed import Embeddings
from afmrl.retrieval.evaluate import evaluate_embeddings, per_query_metrics
from afmrl.retrieval.hard_slice import hard_queries, key_attributes, key_names, near_duplicates

# product -> reference attributes; every product has two listings in split "test" (one query, one gallery)
PRODUCTS = {
    "p1": {"brand": "Arla", "product_type": "milk", "size": "1 l"},
    "p2": {"brand": "arla", "product_type": "milk", "size": "500 ml"},  # p1 but for the size: both hard
    "p3": {"brand": "Norvik", "product_type": "mug", "colour": "red"},
    "p4": {"brand": "norvik", "color": "Blue"},  # p3 but for the colour (2 keys in common): both hard
    "p5": {"brand": "zeta"},  # one key only: never hard
    "p6": {"fine_class": "Tea-A", "product_type": "tea", "brand": "x"},  # p7 differs only in a label: not hard
    "p7": {"fine_class": "Tea-B", "product_type": "tea", "brand": "x"},
}
HARD = {"p1", "p2", "p3", "p4"}


def _frame() -> pd.DataFrame:
    rows = []
    for p, ref in PRODUCTS.items():
        for i in range(2):
            rows.append({"listing_id": f"{p}-{i}", "product_id": p, "title": "x", "description": None, "image": None,
                         "category": None, "split": "test", "attributes": "{}", "reference_attributes": json.dumps(ref)})
    return pd.DataFrame(rows)


def test_key_attributes_are_normalised_reference_over_rules_without_labels():
    df = _frame()
    attrs = key_attributes(df)
    assert attrs[0] == {"product_type": "milk", "brand": "arla", "size": "1 l"}
    assert attrs[2]["size"] == "500 ml" and attrs[6]["colour"] == "blue"  # schema aliases and normalisation
    assert all("fine_class" not in a and "coarse_class" not in a for a in attrs)
    assert "fine_class" not in key_names() and "variety" in key_names()
    # rules fill keys the reference does not state; the reference wins where both do
    one = pd.DataFrame([{"listing_id": "o", "product_id": "q", "title": "Norvik mug 330ml red", "description": None,
                         "split": "test", "attributes": "{}", "reference_attributes": '{"colour": "green"}'}])
    assert key_attributes(one) == [{"category": "mug", "colour": "green", "size": "330 ml"}]


def test_a_photo_without_attributes_takes_its_catalogue_listings():
    df = pd.DataFrame([
        {"listing_id": "cat", "product_id": "p", "title": "Granny Smith", "description": None, "split": "gallery",
         "attributes": "{}", "reference_attributes": '{"product_type": "apple", "variety": "granny smith"}'},
        {"listing_id": "photo", "product_id": "p", "title": "", "description": None, "split": "val",
         "attributes": "{}", "reference_attributes": "{}"},
    ])  # fmt: skip
    attrs = key_attributes(df)
    assert attrs[1] == attrs[0] == {"product_type": "apple", "variety": "granny smith"}


def test_bad_reference_attributes_name_the_record_and_field():
    df = _frame()
    df.loc[3, "reference_attributes"] = "{not json"
    with pytest.raises(DataError) as err:
        key_attributes(df)
    assert "p2-1" in str(err.value) and "reference_attributes" in str(err.value)


def test_near_duplicate_rule():
    q = [{"brand": "a", "size": "1 l"}, {"brand": "a"}, {"brand": "a", "size": "1 l", "colour": "red"}]
    g = [{"brand": "a", "size": "2 l"}, {"brand": "b", "size": "2 l"}, {"brand": "a", "size": "1 l"}]
    nd = near_duplicates(q, g)
    assert nd.tolist() == [[True, False, False], [False, False, False], [True, False, False]]
    other = np.ones((3, 3), dtype=bool)
    other[0, 0] = False  # the same product is never a near-duplicate that makes a query hard
    assert hard_queries(q, g, other).tolist() == [False, False, True]


def test_hard_slice_metrics_and_per_query_values():
    df = _frame()
    roles = eval_roles(df, "test").to_numpy()
    products = list(PRODUCTS)
    vec = np.zeros((len(df), len(products)), dtype=np.float32)
    for i, p in enumerate(df["product_id"]):
        vec[i, products.index(p)] = 1.0
    # p1's query looks exactly like p2: a miss on the hard slice (3 of its 4 queries are found)
    p1_query = np.flatnonzero((df["product_id"] == "p1").to_numpy() & (roles == "query"))[0]
    vec[p1_query] = 0.0
    vec[p1_query, products.index("p2")] = 1.0
    emb = Embeddings(df["listing_id"].tolist(), None, vec, vec, np.zeros(len(df), dtype=bool), cross_modal=False)

    plain = evaluate_embeddings(df, emb, "test")
    assert not any("_hard_" in k for k in plain.metrics)

    result = evaluate_embeddings(df, emb, "test", key_attributes=key_attributes(df))
    hard_products = {df["product_id"][r] for r, h in zip(result.tasks[0].query_rows, result.tasks[0].hard, strict=True)
                     if h}  # fmt: skip
    assert hard_products == HARD
    assert result.metrics["listing_hard_queries"] == 4
    assert result.metrics["listing_hard_R@1"] == pytest.approx(0.75)
    assert result.metrics["listing_R@1"] == pytest.approx(6 / 7)

    doc = per_query_metrics(result, ["listing_R@1", "listing_hard_R@1"], df["listing_id"].tolist())
    assert sorted(doc["values"]["listing_hard_R@1"]) == [0.0, 1.0, 1.0, 1.0]
    assert {i.split("-")[0] for i in doc["query_ids"]["listing_hard"]} == HARD
    assert len(doc["values"]["listing_R@1"]) == 7

    with pytest.raises(DataError):
        evaluate_embeddings(df, emb, "test", key_attributes=[{}])
