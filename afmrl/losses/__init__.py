"""Contrastive losses, one per file: InfoNCE (CLIP), GIST-style guided masking, AGCL, oracle.

All take two batches of L2-normalised embeddings ``a`` and ``b`` (row i of ``a`` and row i of ``b``
are the two views of item i) and return a scalar; they differ only in how they treat the other
items of the batch, through :func:`afmrl.losses.core.weighted_contrastive`. Across processes the
batch is global (:mod:`afmrl.losses.distributed`); :class:`CachedLoss` (GradCache) computes any of
them on a large batch in small memory.
"""

from afmrl.losses.agcl import AGCLLoss, agcl_weights
from afmrl.losses.cached import CachedLoss
from afmrl.losses.core import Temperature, weighted_contrastive, weighted_contrastive_blocks
from afmrl.losses.gist import GISTLoss
from afmrl.losses.infonce import InfoNCELoss
from afmrl.losses.oracle import OracleLoss

__all__ = ["AGCLLoss", "CachedLoss", "GISTLoss", "InfoNCELoss", "OracleLoss", "Temperature", "agcl_weights", "weighted_contrastive",
           "weighted_contrastive_blocks"]
