"""The de-duplication job over a listings table: embed, find neighbours, score pairs, calibrate, group.

:func:`prepare` does the label-free part (pretrained MiniLM text embeddings, optional encoder embeddings,
Milvus neighbours, the per-listing evidence); :func:`decide` learns from labelled pairs (fit, out-of-fold
calibration) and decides the candidate pairs (neighbours, the labelled pairs, and any extra pairs asked
about), then groups. The stage (``afmrl dedup``) and ``benchmarks/dedup.py`` both run these two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from afmrl.config import DedupConfig, EncoderConfig
from afmrl.dedup.calibrate import (
    Calibration,
    estimate_prior,
    fit_scorer,
    threshold_for_f1,
    threshold_for_precision,
)
from afmrl.dedup.features import ListingView, pair_features
from afmrl.dedup.groups import cluster, group_table, review_queue
from afmrl.dedup.neighbours import Neighbours, nearest
from afmrl.errors import DataError
from afmrl.models.encoders import load_encoder

TEXT = "text"  # the pretrained MiniLM embedding of brand + title + attribute values
ENCODER = "encoder"  # the afmrl encoder's listing embedding, when one is given


@dataclass
class Prepared:
    """Label-free evidence: the listing view (with embeddings and neighbour ranks) and the neighbours."""

    view: ListingView
    neighbours: dict[str, Neighbours]
    row_of: dict[str, int]

    def candidate_pairs(self) -> set[tuple[int, int]]:
        out: set[tuple[int, int]] = set()
        for n in self.neighbours.values():
            out |= n.pairs()
        return out

    def rows(self, pairs: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of ``listing_a`` / ``listing_b``; an unknown id is a DataError naming ``what``."""
        out = []
        for column in ("listing_a", "listing_b"):
            missing = ~pairs[column].isin(self.row_of.keys())
            if missing.any():
                raise DataError(f"id {pairs[column][missing].iloc[0]!r} is not a listing", file=what, field=column)
            out.append(pairs[column].map(self.row_of).to_numpy(dtype=np.int64))
        return out[0], out[1]


@dataclass
class DedupResult:
    groups: pd.DataFrame
    review: pd.DataFrame
    calibration: Calibration
    candidates: int
    feature_names: list[str]
    decide_pair: Any = field(repr=False, default=None)  # (a_ids, b_ids) -> same group (bool array)

    def summary(self) -> dict[str, Any]:
        sizes = self.groups.drop_duplicates("group_id")["group_size"]
        return {
            "threshold": self.calibration.threshold, "calibration": self.calibration.to_json(),
            "listings": int(len(self.groups)), "groups": int((sizes > 1).sum()),
            "grouped_listings": int(sizes[sizes > 1].sum()), "largest_group": int(sizes.max()) if len(sizes) else 0,
            "candidate_pairs": self.candidates, "review_pairs": int(len(self.review)), "features": self.feature_names,
        }  # fmt: skip


def text_for_embedding(view: ListingView, i: int) -> str:
    brand = view.brands[i]
    title = view.titles[i]
    parts = [brand if brand and brand not in title else "", title, " ".join(view.attributes[i].values())]
    return " ".join(p for p in parts if p) or "_"


def prepare(listings: pd.DataFrame, cfg: DedupConfig, encoder_vectors: np.ndarray | None = None,
            uri: str | None = None) -> Prepared:  # fmt: skip
    """The listing view with the MiniLM text embeddings (and ``encoder_vectors``, L2-normalised rows in the
    listings' order) and their Milvus neighbours."""
    ids = [str(x) for x in listings["listing_id"]]
    dup = pd.Series(ids)[pd.Series(ids).duplicated()]
    if len(dup):
        raise DataError("duplicate listing id", record=str(dup.iloc[0]), field="listing_id")
    view = ListingView.build(listings)
    view.top_k = cfg.top_k
    text_model = load_encoder("pretrained", EncoderConfig(max_tokens=cfg.max_tokens))
    view.embeddings[TEXT] = np.asarray(text_model.encode_texts([text_for_embedding(view, i) for i in range(len(ids))]),
                                       dtype=np.float32)  # fmt: skip
    if encoder_vectors is not None:
        view.embeddings[ENCODER] = np.asarray(encoder_vectors, dtype=np.float32)
    neighbours = {}
    for name, vectors in view.embeddings.items():
        neighbours[name] = nearest(vectors, cfg.top_k, uri or cfg.uri, what=name)
        view.ranks[name] = neighbours[name].ranks()
        view.best[name] = neighbours[name].best()
    return Prepared(view, neighbours, {lid: i for i, lid in enumerate(ids)})


def decide(prep: Prepared, labelled: pd.DataFrame, cfg: DedupConfig, *, labelled_source: str = "labelled pairs",
           extra_pairs: pd.DataFrame | None = None) -> DedupResult:  # fmt: skip
    """Fit on ``labelled`` (``listing_a, listing_b, label``), calibrate (``cfg.threshold_rule``), score the
    candidates (neighbours + labelled + ``extra_pairs``) and group them."""
    view = prep.view
    la, lb = prep.rows(labelled, labelled_source)
    labels = labelled["label"].to_numpy(dtype=np.int64)
    model, oof = fit_scorer(pair_features(view, la, lb), labels, folds=cfg.folds, seed=cfg.seed,
                            max_iter=cfg.max_iter, learning_rate=cfg.learning_rate)  # fmt: skip
    known = {(min(i, j), max(i, j)): s for i, j, s in zip(la.tolist(), lb.tolist(), oof.tolist(), strict=True)}
    pairs = set(prep.candidate_pairs())
    asked: set[tuple[int, int]] = set()
    if extra_pairs is not None and len(extra_pairs):
        ea, eb = prep.rows(extra_pairs, "pairs to decide")
        asked = {(min(i, j), max(i, j)) for i, j in zip(ea.tolist(), eb.tolist(), strict=True) if i != j}
    pairs |= asked
    todo = sorted(p for p in pairs if p not in known)
    a = np.array([p[0] for p in todo] + [p[0] for p in known], dtype=np.int64)
    b = np.array([p[1] for p in todo] + [p[1] for p in known], dtype=np.int64)
    scores = np.concatenate([
        model.score(pair_features(view, a[: len(todo)], b[: len(todo)])),
        np.array(list(known.values()), dtype=np.float64),  # labelled pairs keep their out-of-fold scores
    ])  # fmt: skip
    prior = None
    if cfg.prior_shift:  # the share of matches among the pairs being decided (those asked about, else all)
        target = np.array([p in asked for p in todo], dtype=bool) if asked else np.ones(len(todo), dtype=bool)
        prior = estimate_prior(scores[: len(todo)][target], float(labels.mean())) if target.any() else None
    if cfg.threshold_rule == "f1":
        calibration = threshold_for_f1(oof, labels, prior)
    else:
        calibration = threshold_for_precision(oof, labels, cfg.target_precision, prior)
    labels_of = cluster(len(view.ids), a, b, scores, calibration.threshold, cfg.grouping)
    groups = group_table(view.ids, labels_of)
    review = review_queue(view.ids, view.titles, a, b, scores, labels_of, calibration.threshold, cfg.review_margin)

    def same_group(ids_a: pd.Series, ids_b: pd.Series) -> np.ndarray:
        ra, rb = prep.rows(pd.DataFrame({"listing_a": ids_a, "listing_b": ids_b}), "pairs to decide")
        return labels_of[ra] == labels_of[rb]

    return DedupResult(groups, review, calibration, len(a), view.feature_names(), same_group)
