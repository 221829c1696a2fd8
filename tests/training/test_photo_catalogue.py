"""The photo -> catalogue pairing: a shopper's photo against its product's catalogue listing, the
listing embedded in training exactly as evaluation embeds it."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from afmrl.catalog import read_catalog, write_catalog
from afmrl.catalog.importers import import_grocery_store
from afmrl.config import Config
from afmrl.training.data import build_pairs, choose_pairing

from ..grocery_layout import write_grocery_layout


@pytest.fixture
def grocery(tmp_path):
    return import_grocery_store(write_grocery_layout(tmp_path / "src"), tmp_path / "gs")


def test_auto_pairs_each_training_photo_with_its_products_catalogue_listing(grocery):
    cfg = Config()
    catalog = read_catalog(grocery)
    pairs = build_pairs(catalog, ("train",), cfg.encoder, cfg.train)
    assert pairs.pairing == "photo_catalogue" and (pairs.a_kind, pairs.b_kind) == ("image", "listing")
    df = catalog.listings.set_index("listing_id")
    assert len(pairs) == 12 and all(df.loc[i, "split"] == "train" for i in pairs.ids)
    for lid, photo, (image, text), attrs, key in zip(pairs.ids, pairs.a_inputs, pairs.b_inputs, pairs.attrs,
                                                      pairs.keys, strict=True):  # fmt: skip
        product = df.loc[lid, "product_id"]
        assert photo.endswith(df.loc[lid, "image"])
        assert image.endswith(f"{product}_Iconic.jpg") and text.startswith(product.replace("-", " "))
        assert "fine_class" not in attrs and "coarse_class" not in attrs  # the shop's attributes, no class ids
        assert key == (df.loc[f"gs-catalogue-{product}", "category"], attrs["product_type"])
    same = pairs.products[:, None] == pairs.products[None, :]
    agree = torch.tensor([[a == b for b in pairs.attrs] for a in pairs.attrs]).numpy()
    assert (same == agree).all()  # photos of one product share every attribute (AGCL's agreeing pairs)
    assert len(set(pairs.products.tolist())) == 4


def test_photos_without_a_catalogue_listing_are_dropped_and_other_pairings_stay(grocery, tmp_path):
    cfg = Config()
    listings = read_catalog(grocery).listings
    without = listings[listings["listing_id"] != "gs-catalogue-Pink-Lady"]
    catalog = read_catalog(write_catalog(without, tmp_path / "cat", image_root=read_catalog(grocery).image_root))
    pairs = build_pairs(catalog, ("train",), cfg.encoder, cfg.train)
    assert len(pairs) == 9 and pairs.stats["dropped_without_pair"] == 3
    titled = listings.assign(title=listings["title"].fillna("a shelf label"))
    assert choose_pairing(titled[titled["split"] == "train"], "auto", titled[titled["split"] == "gallery"]) == "image_text"
    assert choose_pairing(listings[listings["split"] == "train"], "auto", listings.iloc[:0]) == "image_text"


@pytest.mark.slow  # the pretrained towers
def test_a_catalogue_listing_is_embedded_in_training_as_evaluation_embeds_it(grocery, tmp_path):
    from afmrl.models.encoders.dual import DualEncoder
    from afmrl.retrieval.embed import embed_listings
    from afmrl.training.trainer import ContrastiveTrainer

    base = Config()
    cfg = base.model_copy(update={"encoder": base.encoder.model_copy(update={"fusion": "gate", "image_size": 64}),
                                  "train": base.train.model_copy(update={"batch_size": 8, "steps": 3})})  # fmt: skip
    catalog = read_catalog(grocery)
    pairs = build_pairs(catalog, ("train",), cfg.encoder, cfg.train)
    torch.manual_seed(0)
    model = DualEncoder(cfg.encoder)
    torch.nn.init.normal_(model.gate.weight, std=0.5)  # a gate that does not sit at 0.5
    trainer = ContrastiveTrainer(model, pairs, cfg.train, tmp_path / "run", cache_dir=tmp_path / "cache")
    trainer.prepare_features()
    gallery = catalog.listings[catalog.listings["split"] == "gallery"].reset_index(drop=True)
    model.eval()
    with torch.no_grad():
        frozen = trainer._features(model, list(range(len(pairs))), torch.arange(len(pairs)), torch.device("cpu"))[1]
        full_cfg = cfg.train.model_copy(update={"mode": "full"})
        full = ContrastiveTrainer(model, pairs, full_cfg, tmp_path / "run-full")._features(
            model, list(range(len(pairs))), torch.arange(len(pairs)), torch.device("cpu"))[1]  # fmt: skip
    emb = embed_listings(model, catalog, gallery, cfg.encoder, tmp_path / "cache")
    want = pd.DataFrame(emb.listing, index=gallery["product_id"])
    products = catalog.listings.set_index("listing_id").loc[pairs.ids, "product_id"]
    expected = torch.tensor(want.loc[products].to_numpy())
    torch.testing.assert_close(frozen, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(full, expected, atol=1e-4, rtol=1e-3)
    result = trainer.train()
    assert result.steps == 3 and result.final_loss == result.final_loss  # trains (a number, not NaN)
