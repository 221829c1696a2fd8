"""Dual encoder: EfficientNet-Lite0 image tower + MiniLM-L6 text tower, each with a 2-layer
projection head into one shared space; a listing embedding fuses the two (mean of the normalised
parts, or a learned gate).

Heads (``encoder.head``): ``mlp`` (a 2-layer MLP from the tower's width to ``dim``) or ``residual``
(x + MLP(x), last layer at zero: an untrained encoder embeds texts exactly as the zero-shot tower).

Saved as a folder: ``config.json`` (the encoder section, ``head`` included) and ``model.safetensors`` (heads, gate,
and the towers too when they were fine-tuned); ``DualEncoder.from_pretrained(folder)`` loads it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from afmrl.atomic import atomic_path, write_json_atomic
from afmrl.config import EncoderConfig
from afmrl.errors import ConfigError
from afmrl.models.encoders.base import ImageLike, l2_normalize, load_image
from afmrl.models.pretrained import IMAGE_MEAN, IMAGE_STD, EfficientNetFeatures, resolve_text_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class ProjectionHead(nn.Module):
    """``encoder.head: mlp``: LayerNorm -> Linear -> GELU -> Linear, from the tower's width to ``dim``."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResidualHead(ProjectionHead):
    """``encoder.head: residual``: x + MLP(x), the MLP's last layer initialised to zero, so an untrained
    head is the identity and the (normalised) embedding is the tower's zero-shot one; training starts
    at zero-shot. Needs the tower's width to equal ``dim``."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        if in_dim != out_dim:
            raise ValueError(f"a residual head maps {in_dim} to {in_dim} features, not {out_dim}")
        super().__init__(in_dim, hidden, out_dim)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def make_heads(cfg: EncoderConfig, image_width: int, text_width: int) -> tuple[ProjectionHead, ProjectionHead]:
    """(image head, text head). ``mlp``: both MLP heads. ``residual``: a residual head on every tower whose
    width equals ``encoder.dim`` (it starts at that tower's zero-shot embedding), an MLP head on the other;
    one tower must match (a :class:`ConfigError` naming ``encoder.dim`` otherwise). ``dim`` 384 (MiniLM's
    width): texts start at zero-shot MiniLM, the 1280-wide image tower keeps an MLP head; ``dim`` 1280
    (EfficientNet-Lite0's): images start at their zero-shot features and the texts get an MLP into that
    space (with ``encoder.fusion: residual`` a catalogue listing then starts at its image's embedding)."""
    if cfg.head == "mlp":
        return ProjectionHead(image_width, cfg.hidden, cfg.dim), ProjectionHead(text_width, cfg.hidden, cfg.dim)
    if cfg.dim not in (image_width, text_width):
        raise ConfigError(f"encoder.head=residual starts at a tower's zero-shot embedding, so encoder.dim must "
                          f"equal its width: {cfg.text_model} is {text_width} wide, {cfg.image_model} {image_width}; "
                          f"encoder.dim is {cfg.dim}", field="encoder.dim")  # fmt: skip

    def head(width: int) -> ProjectionHead:
        return (ResidualHead if width == cfg.dim else ProjectionHead)(width, cfg.hidden, cfg.dim)

    return head(image_width), head(text_width)


class TextTower(nn.Module):
    """A Hugging Face encoder with attention-masked mean pooling (sentence-transformers style)."""

    def __init__(self, name: str, max_tokens: int) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        path = resolve_text_model(name)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path)
        self.max_tokens = max_tokens
        self.out_dim = int(self.model.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                              return_tensors="pt")  # fmt: skip

    def _masked_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       **kw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(last hidden states with padding zeroed, the mask as (B, T, 1) floats)."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(out.dtype)
        return out * mask, mask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: torch.Tensor) -> torch.Tensor:
        out, mask = self._masked_states(input_ids, attention_mask, **kw)
        return out.sum(1) / mask.sum(1).clamp(min=1e-9)

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: torch.Tensor) -> torch.Tensor:
        """Every token's last hidden state, padding zeroed and padded to ``max_tokens``, flattened:
        (B, max_tokens * width); :class:`TokenPooling` reads it back."""
        out, _ = self._masked_states(input_ids, attention_mask, **kw)
        pad = self.max_tokens - out.shape[1]
        if pad > 0:
            out = torch.nn.functional.pad(out, (0, 0, 0, pad))
        return out.reshape(out.shape[0], -1)


class TokenPooling(nn.Module):
    """``encoder.text_pooling: attention``: a text's embedding is sum_t a_t h_t over its tokens, a = softmax of a
    learned score w . h_t + b over the real tokens (padding rows are zero). w starts at zero, so an untrained
    pooling is the mean over the tokens, exactly the zero-shot sentence embedding; training can weigh the
    tokens that tell products apart (a model number, a size) above the rest."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.score = nn.Linear(width, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def tokens(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(states (B, T, width) float32, mask (B, T)) from flattened token features."""
        states = feats.float().reshape(feats.shape[0], -1, self.width)
        return states, states.abs().sum(-1) > 0

    def mean(self, feats: torch.Tensor) -> torch.Tensor:
        states, mask = self.tokens(feats)
        m = mask.unsqueeze(-1).float()
        return (states * m).sum(1) / m.sum(1).clamp(min=1.0)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        states, mask = self.tokens(feats)
        scores = self.score(states).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).nan_to_num(0.0)  # a text with no token: all weights 0
        return (weights.unsqueeze(-1) * states).sum(1)


class DualEncoder(nn.Module):
    HEAD_PREFIXES = ("image_head.", "text_head.", "gate.", "text_mix", "text_pool.")  # what frozen-backbone training updates
    TOWER_PREFIXES = ("image_tower.", "text_tower.")  # what full fine-tuning adds

    def __init__(self, cfg: EncoderConfig, pretrained_towers: bool = True) -> None:
        super().__init__()
        if cfg.image_model != "efficientnet-lite0":
            raise ValueError(f"encoder.image_model {cfg.image_model!r}: the dual encoder supports efficientnet-lite0")
        self.cfg = cfg
        self.dim = cfg.dim
        self.image_tower = EfficientNetFeatures(pretrained=pretrained_towers)
        self.text_tower = TextTower(cfg.text_model, cfg.max_tokens)
        self.image_head, self.text_head = make_heads(cfg, self.image_tower.out_dim, self.text_tower.out_dim)
        self.gate = nn.Linear(2 * cfg.dim, 1)  # used when fusion == "gate"
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.text_mix = nn.Parameter(torch.zeros(1))  # used when fusion == "residual": the text's share, from 0
        self.text_pool = TokenPooling(self.text_tower.out_dim) if cfg.text_pooling == "attention" else None
        self.register_buffer("pixel_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)
        self.towers_trained = False

    # ---- backbone features (cached by the frozen-backbone trainer) ----
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = ((pixels - self.pixel_mean) / self.pixel_std).contiguous(memory_format=torch.channels_last)
        return self.image_tower(pixels)

    def text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """A text's backbone features: the mean of its token states, or (``text_pooling: attention``) all of
        them, flattened (:meth:`TextTower.token_states`)."""
        if self.text_pool is not None:
            return self.text_tower.token_states(**tokens)
        return self.text_tower(**tokens)

    @property
    def text_feature_width(self) -> int:
        return self.text_tower.out_dim * (self.text_tower.max_tokens if self.text_pool is not None else 1)

    def zero_shot_texts(self, feats: torch.Tensor) -> torch.Tensor:
        """Backbone text features -> the pretrained tower's sentence embedding (mean pooling), unnormalised:
        the zero-shot rows and the guide read this."""
        return self.text_pool.mean(feats) if self.text_pool is not None else feats

    # ---- heads ----
    def project_images(self, feats: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.image_head(feats))

    def project_texts(self, feats: torch.Tensor) -> torch.Tensor:
        pooled = self.text_pool(feats) if self.text_pool is not None else feats
        return l2_normalize(self.text_head(pooled))

    def fuse(self, img: torch.Tensor, txt: torch.Tensor, has_image: torch.Tensor | None = None) -> torch.Tensor:
        """Listing embedding from normalised parts; listings without an image use the text alone.
        ``mean``: (image + text) / 2; ``gate``: a learned per-listing share; ``residual``: image + m * text
        with the learned scalar m starting at 0, so a listing starts at its image's embedding."""
        if self.cfg.fusion == "residual":
            out = img + self.text_mix * txt
            if has_image is not None:
                out = torch.where(has_image.view(-1, 1), out, txt)
            return l2_normalize(out)
        if self.cfg.fusion == "gate":
            g = torch.sigmoid(self.gate(torch.cat([img, txt], dim=-1)))
        else:
            g = torch.full_like(img[:, :1], 0.5)
        if has_image is not None:
            g = torch.where(has_image.view(-1, 1), g, torch.zeros_like(g))
        return l2_normalize(g * img + (1 - g) * txt)

    # ---- numpy API (the Encoder interface) ----
    @torch.inference_mode()
    def image_backbone(self, images: Sequence[ImageLike], batch_size: int | None = None) -> np.ndarray:
        bs = batch_size or self.cfg.batch_size
        out = []
        self.eval()
        for i in range(0, len(images), bs):
            pixels = torch.stack([load_image(im, self.cfg.image_size) for im in images[i : i + bs]])
            out.append(self.image_features(pixels).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.image_tower.out_dim), np.float32)

    @torch.inference_mode()
    def text_backbone(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        bs = batch_size or self.cfg.batch_size
        out = []
        self.eval()
        # sort by length so each batch pads little
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for i in range(0, len(order), bs):
            idx = order[i : i + bs]
            out.append(self.text_features(self.text_tower.tokenize([texts[j] for j in idx])).float().numpy())
        feats = np.concatenate(out) if out else np.zeros((0, self.text_feature_width), np.float32)
        result = np.empty_like(feats)
        result[order] = feats
        return result

    @torch.inference_mode()
    def encode_images(self, images: Sequence[ImageLike]) -> np.ndarray:
        feats = torch.from_numpy(self.image_backbone(images))
        return self.project_images(feats).numpy().astype(np.float32)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        feats = torch.from_numpy(self.text_backbone(texts))
        return self.project_texts(feats).numpy().astype(np.float32)

    @torch.inference_mode()
    def encode_listings(self, texts: Sequence[str], images: Sequence[ImageLike | None]) -> np.ndarray:
        txt = torch.from_numpy(self.encode_texts(texts))
        has = torch.tensor([im is not None for im in images], dtype=torch.bool)
        img = torch.zeros_like(txt)
        if has.any():
            img[has] = torch.from_numpy(self.encode_images([im for im in images if im is not None]))
        return self.fuse(img, txt, has).numpy().astype(np.float32)

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n.startswith(self.HEAD_PREFIXES)]

    def tower_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n.startswith(self.TOWER_PREFIXES)]

    # ---- persistence ----
    def trainable_state(self) -> dict[str, torch.Tensor]:
        state = self.state_dict()
        if not self.towers_trained:
            state = {k: v for k, v in state.items() if k.startswith(self.HEAD_PREFIXES)}
        return {k: v.detach().contiguous().cpu() for k, v in state.items()}

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"afmrl_encoder": "dual", "towers_trained": self.towers_trained, **self.cfg.model_dump()}
        with atomic_path(folder / WEIGHTS_FILE) as tmp:  # each file whole or absent (a full disk, a kill)
            save_file(self.trainable_state(), str(tmp))
        write_json_atomic(folder / CONFIG_FILE, meta, sort_keys=True)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> DualEncoder:
        folder = Path(folder)
        meta = json.loads((folder / CONFIG_FILE).read_text())
        towers_trained = bool(meta.pop("towers_trained", False))
        meta.pop("afmrl_encoder", None)
        model = cls(EncoderConfig(**meta), pretrained_towers=not towers_trained)
        missing, unexpected = model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=False)
        if unexpected:
            raise ValueError(f"{folder}: unexpected weights {unexpected[:5]}")
        model.towers_trained = towers_trained
        return model.eval()
