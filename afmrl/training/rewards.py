"""RAR reward functions (trl signature ``f(prompts, completions, **columns) -> list[float]``).

**Retrieval reward** (the paper's "retrieval improvement"). A completion is parsed into attributes
``A`` (:func:`parse_attributes`); the query is the listing as the representation model ``E`` (the AGCL
encoder trained in the same run, frozen) sees it with those attributes: where the listing has a photo
(``rar.query_modality``: ``auto`` / ``listing``), the FUSED embedding of the photo and the enhanced text
``enhanced_text(title, A)`` (``E.encode_listings``: the photo's embedding is computed once per listing);
``text``: the enhanced text alone. Against a gallery ``G`` (embedded once, ``rar.gallery_modality``,
built from listings' shop text and stated attributes only, never ``reference_attributes``) with target
set ``T`` (``rar.target``: ``self`` = the listing's own gallery entry; ``product`` = the other gallery
listings of its ``product_id``, the listing itself excluded)::

    s_j        = cos(E(query), G_j)
    rank       = 1 + #{ j not in T : s_j > max_{t in T} s_t }
    margin     = max_{t in T} s_t - max_{j not in T} s_j
    score(q)   = 1 / rank + lambda_m * margin                       (lambda_m = rar.margin_weight)
    r_retrieval = clip(score(query with A) - score(query without attributes), -1, 1)

so attributes that move the target up earn a positive reward, misleading ones a negative one. An
EMPTY or UNPARSEABLE answer earns ``rar.invalid_reward`` (default -1.5), below the -1 floor of any
parseable answer: ``{}`` is never a safe policy, and any answer with one key right outranks it. The
margin term grades completions whose target lands on the same rank, so a GRPO group rarely has
identical rewards (identical rewards give no gradient).

**Format reward**: ``(0.5`` for a strictly valid JSON object, ``0.25`` if it needed repairs: prose,
fences with text, trailing commas, single quotes...; ``+ 0.5 * typed / emitted`` (keys that are schema
keys with a string value, over all emitted keys)``) x coverage``, where coverage is the share of the
prompt's keys answered; ``0.1 x coverage`` for ``key: value`` lines that are not JSON; ``0`` otherwise.
Scaling by coverage means a short answer (``{}``, one key) cannot farm it. The total is
``rar.retrieval_weight * r_retrieval + rar.format_weight * r_format`` (trl ``reward_weights``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from afmrl.attributes.parse import parse_detailed
from afmrl.attributes.schema import DEFAULT_SCHEMA, AttributeSchema, enhanced_text
from afmrl.models.encoders.base import Encoder, ImageLike

Target = Literal["self", "product"]


def completion_text(completion: Any) -> str:
    """The assistant text of a trl completion (conversational list of messages, or a plain string)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else completion[-1]
        if isinstance(content, list):
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content or "")
    return ""


@dataclass
class Gallery:
    """Gallery embeddings (rows L2-normalised) with the listing and product of each row."""

    embeddings: np.ndarray
    listing_ids: list[str]
    product_ids: list[str | None]
    _index: dict[str, int] = field(default_factory=dict, repr=False)
    _by_product: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if len(self.embeddings) != len(self.listing_ids) or len(self.listing_ids) != len(self.product_ids):
            raise ValueError("gallery embeddings, listing ids and product ids differ in length")
        self._index = {lid: i for i, lid in enumerate(self.listing_ids)}
        for i, p in enumerate(self.product_ids):
            if p is not None:
                self._by_product.setdefault(p, []).append(i)

    @classmethod
    def build(cls, encoder: Encoder, listing_ids: Sequence[str], product_ids: Sequence[str | None], *,
              texts: Sequence[str] | None = None, images: Sequence[ImageLike | None] | None = None,
              modality: Literal["image", "text", "listing"] = "text") -> Gallery:  # fmt: skip
        if modality == "text":
            if texts is None:
                raise ValueError("a text gallery needs texts")
            emb = encoder.encode_texts(list(texts))
        elif modality == "image":
            if images is None or any(im is None for im in images):
                raise ValueError("an image gallery needs an image for every listing")
            emb = encoder.encode_images(list(images))
        else:
            if texts is None or images is None:
                raise ValueError("a listing gallery needs texts and images")
            emb = encoder.encode_listings(list(texts), list(images))
        return cls(np.asarray(emb, dtype=np.float32), list(listing_ids), list(product_ids))

    def __len__(self) -> int:
        return len(self.listing_ids)

    def targets(self, listing_id: str, product_id: str | None, target: Target) -> tuple[list[int], list[int]]:
        """(target rows, excluded rows) of a query listing; empty targets: the listing cannot be scored."""
        own = self._index.get(listing_id)
        if target == "self":
            return ([own] if own is not None else []), []
        rows = [i for i in self._by_product.get(product_id, []) if i != own] if product_id is not None else []
        return rows, ([own] if own is not None else [])


def retrieval_score(sims: np.ndarray, targets: Sequence[int], exclude: Sequence[int] = (),
                    margin_weight: float = 0.5) -> tuple[float, float, float]:  # fmt: skip
    """(score, reciprocal rank, margin) of the best-ranked target (see the module docstring)."""
    if not len(targets):
        raise ValueError("no target to rank")
    is_target = np.zeros(len(sims), dtype=bool)
    is_target[list(targets)] = True
    keep = np.ones(len(sims), dtype=bool)
    keep[list(exclude)] = False
    best = float(sims[is_target & keep].max())
    others = sims[~is_target & keep]
    rank = 1 + int((others > best).sum())
    margin = best - float(others.max()) if len(others) else best
    rr = 1.0 / rank
    return rr + margin_weight * margin, rr, margin


@dataclass
class QueryListing:
    listing_id: str
    title: str | None
    product_id: str | None = None
    image: ImageLike | None = None  # the listing's photo: the query side fuses it with the enhanced text


INVALID_REWARD = -1.5  # rar.invalid_reward's default: below the -1 floor of any parseable answer
QueryModality = Literal["auto", "text", "listing"]


class RewardStats:
    """Numbers the reward functions gather between two trainer logs (valid-JSON rate, RR with/without,
    and each completion's reward per function, from which :meth:`pop_means` computes the spread of the
    weighted total within each GRPO group: ``rar/reward_group_std``, the signal GRPO learns from)."""

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        self.values: dict[str, list[float]] = {}
        self.weights = dict(weights or {})
        self._per_completion: dict[str, list[tuple[str, float]]] = {}

    def add(self, name: str, values: Sequence[float]) -> None:
        self.values.setdefault(name, []).extend(float(v) for v in values)

    def add_rewards(self, name: str, listing_ids: Sequence[str], values: Sequence[float]) -> None:
        self._per_completion.setdefault(name, []).extend(zip(listing_ids, map(float, values), strict=True))

    def group_std(self) -> float | None:
        """Mean over GRPO groups (consecutive completions of one listing) of the std of the weighted total."""
        names = [n for n in self._per_completion if self.weights.get(n, 1.0)]
        if not names or len({len(self._per_completion[n]) for n in names}) != 1:
            return None
        rows = self._per_completion[names[0]]
        totals = [sum(self.weights.get(n, 1.0) * self._per_completion[n][i][1] for n in names) for i in range(len(rows))]
        groups: list[list[float]] = []
        for i, (lid, _) in enumerate(rows):
            if i == 0 or lid != rows[i - 1][0]:
                groups.append([])
            groups[-1].append(totals[i])
        stds = [float(np.std(g, ddof=1)) for g in groups if len(g) > 1]
        return float(np.mean(stds)) if stds else None

    def pop_means(self, prefix: str = "rar/") -> dict[str, float]:
        out = {f"{prefix}{k}": float(np.mean(v)) for k, v in self.values.items() if v}
        spread = self.group_std()
        if spread is not None:
            out[f"{prefix}reward_group_std"] = spread
        self.values = {}
        self._per_completion = {}
        return out


class RetrievalReward:
    """Graded retrieval improvement of the completion's attributes over the listing without them."""

    __name__ = "retrieval"

    def __init__(self, encoder: Encoder, gallery: Gallery, queries: Mapping[str, QueryListing], *,
                 target: Target = "product", margin_weight: float = 0.5, schema: AttributeSchema = DEFAULT_SCHEMA,
                 stats: RewardStats | None = None, query_modality: QueryModality = "auto",
                 invalid_reward: float = INVALID_REWARD) -> None:  # fmt: skip
        if invalid_reward >= -1.0:
            raise ValueError(f"invalid_reward {invalid_reward} must be below -1 (the floor of a parseable answer)")
        self.encoder = encoder
        self.gallery = gallery
        self.queries = dict(queries)
        self.target = target
        self.margin_weight = margin_weight
        self.schema = schema
        self.stats = stats
        self.query_modality = query_modality
        self.invalid_reward = invalid_reward
        self._baseline: dict[str, tuple[float, float]] = {}
        self._text_cache: dict[str, np.ndarray] = {}
        self._image_cache: dict[str, np.ndarray] = {}

    def scorable(self, listing_id: str) -> bool:
        q = self.queries.get(listing_id)
        return q is not None and bool(self.gallery.targets(q.listing_id, q.product_id, self.target)[0])

    def uses_photo(self, listing_id: str) -> bool:
        """Whether this listing's query fuses its photo with the text (``query_modality``)."""
        return self.query_modality != "text" and self.queries[listing_id].image is not None

    def _embed(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            for t, e in zip(missing, self.encoder.encode_texts(missing), strict=True):
                self._text_cache[t] = np.asarray(e, dtype=np.float32)
            if len(self._text_cache) > 50_000:  # bounded memory over a long run
                self._text_cache = {t: self._text_cache[t] for t in texts}
        return {t: self._text_cache[t] for t in texts}

    def _query(self, listing_id: str, text: str) -> np.ndarray:
        """The query embedding: the text's, or the listing's photo fused with it (the encoder's own fusion)."""
        if not self.uses_photo(listing_id):
            return self._embed([text])[text]
        fuse = getattr(self.encoder, "fuse", None)
        if fuse is None:  # an encoder without separable fusion: embed the listing whole
            q = self.queries[listing_id]
            return np.asarray(self.encoder.encode_listings([text], [q.image])[0], dtype=np.float32)
        import torch

        if listing_id not in self._image_cache:
            self._image_cache[listing_id] = np.asarray(self.encoder.encode_images([self.queries[listing_id].image])[0],
                                                       dtype=np.float32)  # fmt: skip
        img = torch.from_numpy(self._image_cache[listing_id][None])
        txt = torch.from_numpy(self._embed([text])[text][None])
        with torch.inference_mode():
            return fuse(img, txt, torch.tensor([True])).numpy()[0].astype(np.float32)

    def _score(self, listing_id: str, emb: np.ndarray) -> tuple[float, float]:
        q = self.queries[listing_id]
        targets, exclude = self.gallery.targets(q.listing_id, q.product_id, self.target)
        score, rr, _ = retrieval_score(self.gallery.embeddings @ emb, targets, exclude, self.margin_weight)
        return score, rr

    def baseline(self, listing_id: str) -> tuple[float, float]:
        """(score, reciprocal rank) of the listing without attributes (its title; its photo too), cached."""
        if listing_id not in self._baseline:
            title = enhanced_text(self.queries[listing_id].title, {}, self.schema)
            self._baseline[listing_id] = self._score(listing_id, self._query(listing_id, title))
        return self._baseline[listing_id]

    def score_attributes(self, listing_id: str, attrs: Mapping[str, Any]) -> float:
        """The reward of one attribute dict for one listing (used by tests and analysis)."""
        return self.rewards([listing_id], [dict(attrs)])[0]

    def rewards(self, listing_ids: Sequence[str], attrs: Sequence[Mapping[str, Any]]) -> list[float]:
        """One reward per (listing, attributes); empty attributes (nothing parseable) earn ``invalid_reward``."""
        attrs = [self.schema.normalize(a) for a in attrs]  # the canonical form the representation model saw
        texts = [enhanced_text(self.queries[lid].title, a, self.schema) for lid, a in zip(listing_ids, attrs, strict=True)]
        self._embed([t for lid, t in zip(listing_ids, texts, strict=True) if self.scorable(lid)])  # one batch
        out, rr_with, rr_without = [], [], []
        for lid, a, text in zip(listing_ids, attrs, texts, strict=True):
            if not self.scorable(lid):
                out.append(0.0)
                continue
            base_score, base_rr = self.baseline(lid)
            if not a:
                out.append(self.invalid_reward)
                rr_with.append(base_rr)
                rr_without.append(base_rr)
                continue
            score, rr = self._score(lid, self._query(lid, text))
            out.append(float(np.clip(score - base_score, -1.0, 1.0)))
            rr_with.append(rr)
            rr_without.append(base_rr)
        if self.stats is not None:
            self.stats.add("rr_with_attributes", rr_with)
            self.stats.add("rr_without_attributes", rr_without)
            self.stats.add_rewards("retrieval", listing_ids, out)
        return out

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], listing_id: Sequence[str],
                 **columns: Any) -> list[float]:  # fmt: skip
        parsed = [parse_detailed(completion_text(c), self.schema).attrs for c in completions]
        return self.rewards(list(listing_id), parsed)


class FormatReward:
    """Valid JSON with schema keys and typed (string) values, scaled by the share of the prompt's keys
    answered (see the module docstring)."""

    __name__ = "format"

    def __init__(self, schema: AttributeSchema = DEFAULT_SCHEMA, stats: RewardStats | None = None,
                 keys: Sequence[str] | None = None) -> None:  # fmt: skip
        self.schema = schema
        self.stats = stats
        self.keys = list(keys) if keys else list(schema.keys)

    def score(self, text: str) -> tuple[float, bool]:
        res = parse_detailed(text, self.schema)
        coverage = min(1.0, len([k for k in res.attrs if k in self.keys]) / max(1, len(self.keys)))
        if res.valid:
            typed = max(0, res.kept_keys - len(res.coerced))
            frac = typed / res.emitted_keys if res.emitted_keys else 0.0
            return ((0.5 if res.strict else 0.25) + 0.5 * frac) * coverage, True
        return (0.1 * coverage if res.attrs else 0.0), False

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        scored = [self.score(completion_text(c)) for c in completions]
        if self.stats is not None:
            self.stats.add("valid_json_rate", [v for _, v in scored])
            if "listing_id" in columns:
                self.stats.add_rewards("format", columns["listing_id"], [s for s, _ in scored])
        return [s for s, _ in scored]
