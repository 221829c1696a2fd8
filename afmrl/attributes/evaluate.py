"""Attribute extraction quality against reference attributes (both sides normalised first).

A (listing, key) pair is judged only where the reference states the key (a reference without the
key cannot say a prediction is wrong). For a judged pair: a correct prediction is a true positive;
a wrong one is a false positive and a false negative (a wrong value both asserts something false
and misses the truth); a missing prediction is a false negative. Per key: support (judged pairs),
accuracy (= recall: correct / support), precision, F1. Micro P/R/F1 pool the counts over keys;
macro F1 is the mean of the per-key F1. ``exact_match``: listings with every judged key correct.
``valid_json_rate``: share of outputs a JSON object was recovered from (when ``valid`` is given).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

from afmrl.attributes.schema import DEFAULT_SCHEMA, AttributeSchema


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def evaluate_attributes(
    predicted: Sequence[Mapping[str, Any] | None],
    reference: Sequence[Mapping[str, Any] | None],
    *,
    valid: Sequence[bool] | None = None,
    keys: Sequence[str] | None = None,
    schema: AttributeSchema = DEFAULT_SCHEMA,
) -> dict[str, Any]:
    if len(predicted) != len(reference):
        raise ValueError(f"{len(predicted)} predictions for {len(reference)} references")
    preds = [schema.normalize(p) for p in predicted]
    refs = [schema.normalize(r) for r in reference]
    judged_keys = list(keys) if keys is not None else list(schema.ordered({k: 1 for r in refs for k in r}))
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    support: Counter[str] = Counter()
    exact = judged_listings = 0
    for p, r in zip(preds, refs, strict=True):
        all_right, any_judged = True, False
        for k in judged_keys:
            if k not in r:
                continue
            any_judged = True
            support[k] += 1
            if p.get(k) == r[k]:
                tp[k] += 1
            else:
                all_right = False
                fn[k] += 1
                if k in p:
                    fp[k] += 1
        if any_judged:
            judged_listings += 1
            exact += all_right
    per_key = {}
    for k in judged_keys:
        if support[k]:
            per_key[k] = {"support": support[k], "accuracy": tp[k] / support[k], **_prf(tp[k], fp[k], fn[k])}
    micro = _prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    out: dict[str, Any] = {
        "n": len(preds),
        "micro": micro,
        "macro_f1": sum(v["f1"] for v in per_key.values()) / len(per_key) if per_key else 0.0,
        "exact_match": exact / judged_listings if judged_listings else 0.0,
        "per_key": per_key,
    }
    if valid is not None:
        out["valid_json_rate"] = sum(bool(v) for v in valid) / len(valid) if len(valid) else 0.0
    return out


def flat_metrics(report: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"micro_f1": .., "macro_f1": .., "acc.brand": ..}`` for MLflow."""
    out = {f"{prefix}micro_f1": report["micro"]["f1"], f"{prefix}micro_precision": report["micro"]["precision"],
           f"{prefix}micro_recall": report["micro"]["recall"], f"{prefix}macro_f1": report["macro_f1"],
           f"{prefix}exact_match": report["exact_match"]}  # fmt: skip
    if "valid_json_rate" in report:
        out[f"{prefix}valid_json_rate"] = report["valid_json_rate"]
    for k, v in report["per_key"].items():
        out[f"{prefix}acc.{k}"] = v["accuracy"]
    return out


def pair_agreement(attrs: Sequence[Mapping[str, Any]], products: Sequence[Any], *, min_shared: int = 2,
                   block_key: str = "brand") -> dict[str, Any]:  # fmt: skip
    """How extracted attributes read pairs of listings, the measure AGCL's masks and hard negatives rest on.

    A pair is *comparable* when both listings state at least ``min_shared`` keys; it then agrees on all of
    them (AGCL masks it as the same product) or differs in one (a hard negative) or more. Counted over the
    pairs of one product, and over the pairs of different products that state the same ``block_key``
    (every cross-product pair would be quadratic in the catalogue). Returns the counts per group and
    ``mask_precision`` (same-product share of the agreeing pairs) and ``hard_purity`` (different-product
    share of the one-key-apart pairs). ``products`` are labels: an evaluation of the extractor only."""
    def diff(i: int, j: int) -> int | None:
        shared = [k for k in attrs[i] if k in attrs[j]]
        return None if len(shared) < min_shared else sum(attrs[i][k] != attrs[j][k] for k in shared)

    counts = {g: Counter() for g in ("same_product", "other_product")}
    by_product, by_block = defaultdict(list), defaultdict(list)
    for i, (a, p) in enumerate(zip(attrs, products, strict=True)):
        by_product[p].append(i)
        if a.get(block_key):
            by_block[a[block_key]].append(i)
    for group, blocks, same in (("same_product", by_product, True), ("other_product", by_block, False)):
        for members in blocks.values():
            for i, j in combinations(members, 2):
                if (products[i] == products[j]) != same:
                    continue
                d = diff(i, j)
                counts[group]["incomparable" if d is None else "agree" if d == 0 else "one_differs" if d == 1
                              else "more_differ"] += 1  # fmt: skip
    s, o = counts["same_product"], counts["other_product"]
    return {"same_product": dict(s), "other_product": dict(o),
            "mask_precision": s["agree"] / max(1, s["agree"] + o["agree"]),
            "hard_purity": o["one_differs"] / max(1, o["one_differs"] + s["one_differs"])}  # fmt: skip
