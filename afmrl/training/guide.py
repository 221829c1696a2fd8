"""GIST's guide: zero-shot embeddings of both views of each training pair, in a space they share.

GIST (:class:`afmrl.losses.GISTLoss`) masks a candidate when a frozen guide rates it as close to the
anchor as the anchor's positive; the guide has to compare the two sides of a pair, so both sides'
guide vectors must live in one space. The guide here is the pretrained towers (``train.guide_model:
zero-shot``), from the backbone features the trainer already holds:

- text-text pairs (title / description, two offers of one product): the zero-shot text embedding of
  each side (MiniLM mean pooling, normalised: all-MiniLM-L6-v2's own sentence embedding);
- image-image pairs: the zero-shot image features of each side;
- a photo and a catalogue ``listing`` (image + text, features ``[image | text]``,
  :func:`afmrl.models.features.split_listing_features`): the parts both sides have: the photo's
  image features and the listing's image part, so ap / aa / pp are image-image similarities; a
  text and a listing: the text parts; two listings: both parts (each normalised, concatenated);
  a listing without an image takes the other side's vector of that row (the guide then sees the row's
  two sides as identical: nothing of that row is masked at margin 0);
- image-text pairs: the towers share no space. Fallback: each item is described by its own two
  views, ``[image | text]`` (each normalised, concatenated), on both sides; the guide's
  anchor-positive similarity is then 1 and, at ``train.gist_margin`` m > 0, a candidate is masked
  when its image and text are together within m of the anchor item's (mean of the image-image and
  text-text cosines > 1 - m); at m = 0 nothing is masked and GIST is InfoNCE's cross block plus its
  anchor-anchor and positive-positive blocks.

Example::

    guide_a, guide_b = zero_shot_guides(model, "image", img_feats, "listing", listing_feats)
"""

from __future__ import annotations

import torch

from afmrl.models.encoders.base import l2_normalize
from afmrl.models.encoders.dual import DualEncoder
from afmrl.models.features import split_listing_features


def guide_parts(model: DualEncoder, kind: str, feats: torch.Tensor) -> dict[str, torch.Tensor]:
    """The zero-shot parts of one view's backbone features: ``image`` and / or ``text`` (rows of NaN:
    the part is missing, e.g. a listing without an image)."""
    if kind == "listing":
        img, txt = split_listing_features(model, feats)
        return {"image": img, "text": model.zero_shot_texts(txt)}
    return {"text": model.zero_shot_texts(feats)} if kind == "text" else {kind: feats}


def _pooled(model: DualEncoder, kind: str, feats: torch.Tensor) -> torch.Tensor:
    """One view's zero-shot parts side by side (:func:`guide_parts`: a listing's ``[image | text]``)."""
    return torch.cat([x.float() for x in guide_parts(model, kind, feats).values()], dim=1)


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return l2_normalize(torch.nan_to_num(x.float(), nan=0.0))


def zero_shot_guides(model: DualEncoder, a_kind: str, feats_a: torch.Tensor, b_kind: str,
                     feats_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(guide_a, guide_b), (N, d') each: the guide embeddings of both views of N pairs (module doc)."""
    pa, pb = guide_parts(model, a_kind, feats_a), guide_parts(model, b_kind, feats_b)
    shared = sorted(set(pa) & set(pb))
    if not shared:  # image-text: no shared space; each item by its own two views, on both sides
        both = l2_normalize(torch.cat([_normalised(_pooled(model, a_kind, feats_a)),
                                       _normalised(_pooled(model, b_kind, feats_b))], dim=1))  # fmt: skip
        return both, both
    ga, gb = [], []
    for part in shared:
        xa, xb = pa[part], pb[part]
        miss_a, miss_b = torch.isnan(xa).any(dim=1, keepdim=True), torch.isnan(xb).any(dim=1, keepdim=True)
        na, nb = _normalised(xa), _normalised(xb)
        ga.append(torch.where(miss_a, nb, na))  # a missing part: the other side's (the row's sides alike)
        gb.append(torch.where(miss_b, na, nb))
    return l2_normalize(torch.cat(ga, dim=1)), l2_normalize(torch.cat(gb, dim=1))
