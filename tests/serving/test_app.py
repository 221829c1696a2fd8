"""The service in process (FastAPI's TestClient) on a tiny real pipeline output: search by text, photo
and listing, attribute agreement, health and metrics, and every kind of bad request."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from afmrl.catalog import read_catalog
from afmrl.serving.app import create_app
from afmrl.serving.state import ServingState

pytestmark = pytest.mark.slow  # builds two Milvus Lite collections and an MLflow registry (session fixture)


@pytest.fixture(scope="module")
def client(built, tmp_path_factory):
    b = built.copy(tmp_path_factory.mktemp("app") / "stores")
    cfg = b.cfg("serve.max_upload_mb=1")
    state = ServingState(cfg)
    state.start()
    with TestClient(create_app(cfg, state), raise_server_exceptions=False) as c:
        yield c, b
    state.close()


def photo_bytes(catalog, fmt: str = "JPEG") -> tuple[bytes, str]:
    cat = read_catalog(catalog)
    row = cat.listings[cat.listings["image"].notna()].iloc[0]
    img = Image.open(cat.image_path(row["image"])).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue(), str(row["listing_id"])


def test_text_search_returns_ranked_candidates_with_attribute_agreement(client):
    c, b = client
    cat = read_catalog(b.catalog).listings
    title = str(cat.iloc[0]["title"])
    r = c.post("/search", json={"text": title, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["collection"] == b.collections[0] and body["version"] == b.versions[0]
    assert len(body["results"]) == 5
    scores = [h["score"] for h in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert {"encode_ms", "search_ms", "overhead_ms", "total_ms"} <= set(body["timing"])
    assert body["query"]["attributes"], "attributes read from the typed title"
    compared = [h["compare"] for h in body["results"]]
    assert any(cmp["agree"] for cmp in compared)
    for cmp in compared:  # a key is on one side only
        assert not set(cmp["agree"]) & set(cmp["differ"])
    assert any(h["image_url"] for h in body["results"])


def test_photo_upload_and_photo_plus_text(client):
    c, b = client
    data, lid = photo_bytes(b.catalog)
    r = c.post("/search", files={"image": ("q.jpg", data, "image/jpeg")}, data={"k": "3"})
    assert r.status_code == 200, r.text
    assert r.json()["query"]["image"] is True and len(r.json()["results"]) == 3
    both = c.post("/search", files={"image": ("q.jpg", data, "image/jpeg")}, data={"text": "mug", "k": "3"})
    assert both.status_code == 200 and both.json()["query"]["text"] == "mug"


def test_similar_to_a_listing_excludes_itself_and_images_are_served(client):
    c, b = client
    _, lid = photo_bytes(b.catalog)
    r = c.get(f"/listings/{lid}/similar", params={"k": 4})
    assert r.status_code == 200, r.text
    ids = [h["listing_id"] for h in r.json()["results"]]
    assert lid not in ids and len(ids) == 4
    img = c.get(f"/images/{lid}")
    assert img.status_code == 200 and img.headers["content-type"].startswith("image/")
    assert c.get(f"/listings/{lid}").json()["listing_id"] == lid


def test_health_and_metrics(client):
    c, b = client
    h = c.get("/health").json()
    assert h["status"] == "ok" and h["serving"]["collection"] == b.collections[0]
    c.post("/search", json={"text": "red mug"})
    m = c.get("/metrics").text
    assert 'afmrl_requests_total{route="/search",status="200"}' in m
    assert "afmrl_encode_seconds_bucket" in m and "afmrl_served_version 1.0" in m


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"json": {"text": "   "}}, 400, "empty query"),
        ({"json": {}}, 400, "empty query"),
        ({"json": ["a"]}, 400, "JSON body must be an object"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"json": {"text": "mug", "k": 0}}, 422, "k must be between"),
        ({"json": {"text": "mug", "k": "ten"}}, 422, "whole number"),
        ({"json": {"text": 5}}, 422, "text must be a string"),
        ({"files": {"image": ("x.jpg", b"this is not an image", "image/jpeg")}}, 415, "not an image"),
        ({"files": {"image": ("x.jpg", b"", "image/jpeg")}}, 400, "is empty"),
        ({"content": b"text=mug", "headers": {"content-type": "text/plain"}}, 415, "multipart form"),
        ({"json": {"text": "x" * 5000}}, 413, "max_query_chars"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(client, kwargs, status, needle):
    c, _ = client
    r = c.post("/search", **kwargs)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]
    assert c.get("/health").status_code == 200  # still serving


def test_a_body_over_the_limit_is_413_and_the_service_goes_on(client):
    c, _ = client
    big = b"\xff" * (3 * 2**20)  # the limit is 1 MiB here (50 MB in the example: same path)
    r = c.post("/search", files={"image": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and "max_upload_mb" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while it streams
        for _ in range(3):
            yield b"\x00" * 2**20

    r2 = c.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert r2.status_code == 413
    assert c.post("/search", json={"text": "mug"}).status_code == 200


def test_unknown_listing_and_image_are_404(client):
    c, _ = client
    for path in ("/listings/nope/similar", "/listings/nope", "/images/nope", '/listings/a"b/similar'):
        r = c.get(path)
        assert r.status_code == 404, (path, r.text)
        assert "nope" in r.json()["detail"] or 'a"b' in r.json()["detail"]


def test_pages_and_an_empty_dedup_state(client):
    c, _ = client
    assert "Identical-product search" in c.get("/").text
    assert "Duplicate review" in c.get("/dedup").text
    d = c.get("/api/dedup").json()
    assert d["available"] is False and "--dedup" in d["message"]
