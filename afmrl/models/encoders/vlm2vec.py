"""VLM2Vec-style embedder: a multimodal LLM's last-token hidden state (``encoder.kind: vlm2vec``).

The listing (image and/or text) is written with the model's chat template, an instruction asks for
a one-word summary (VLM2Vec's recipe), and the final layer's hidden state at the last position is
the embedding, L2-normalised. Loadable by hub id (e.g. Qwen/Qwen2-VL-2B-Instruct) or folder (a tiny
model from ``afmrl models build-tiny``); ``lora`` wraps the LLM with peft adapters (r=16, alpha=64
as VLM2Vec) for contrastive fine-tuning. Inputs are left-padded so the last position is real.
Reference: Jiang et al., "VLM2Vec: Training Vision-Language Models for Massive Multimodal
Embedding Tasks", ICLR 2025.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from afmrl.models.encoders.base import ImageLike, l2_normalize

INSTRUCTION = "Represent the given product listing in one word:"


class VLM2VecEncoder:
    def __init__(self, name: str, batch_size: int = 8, lora: bool = False, max_pixels: int | None = None,
                 device: str = "cpu") -> None:  # fmt: skip
        from afmrl.models.mllm import load_mllm

        loaded = load_mllm(name, max_pixels=max_pixels, device=device)
        self.model, self.processor, self.is_vlm = loaded.model, loaded.processor, loaded.is_vlm
        if lora:
            from peft import LoraConfig, get_peft_model

            targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
            self.model = get_peft_model(self.model, LoraConfig(r=16, lora_alpha=64, target_modules=targets,
                                                               lora_dropout=0.0))  # fmt: skip
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.tokenizer.padding_side = "left"
        self.batch_size = batch_size
        self.device = device
        self.dim = int(self.model.config.get_text_config().hidden_size)

    def _prompt(self, text: str | None, with_image: bool) -> str:
        content: list[dict] = [{"type": "image"}] if with_image else []
        content.append({"type": "text", "text": f"{INSTRUCTION} {text or ''}".strip()})
        messages = [{"role": "user", "content": content if self.is_vlm else content[-1]["text"]}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) \
            if not self.is_vlm else self.processor.apply_chat_template(messages, tokenize=False,
                                                                      add_generation_prompt=True)  # fmt: skip

    def embed(self, texts: Sequence[str | None], images: Sequence[ImageLike | None], grad: bool = False) -> torch.Tensor:
        """(n, hidden) last-token states; with ``grad`` the graph is kept (contrastive LoRA training)."""
        outs = []
        for i in range(0, len(texts), self.batch_size):
            t, ims = list(texts[i : i + self.batch_size]), list(images[i : i + self.batch_size])
            with_img = [im is not None for im in ims]
            if any(with_img) and not all(with_img):  # one modality mix per forward: split the batch
                idx_img = [j for j, w in enumerate(with_img) if w]
                idx_txt = [j for j, w in enumerate(with_img) if not w]
                part = torch.empty(len(t), self.dim)
                part[idx_img] = self.embed([t[j] for j in idx_img], [ims[j] for j in idx_img], grad)
                part[idx_txt] = self.embed([t[j] for j in idx_txt], [None] * len(idx_txt), grad)
                outs.append(part)
                continue
            prompts = [self._prompt(x, w) for x, w in zip(t, with_img, strict=True)]
            if any(with_img) and self.is_vlm:
                pics = [im if isinstance(im, Image.Image) else Image.open(im).convert("RGB") for im in ims]
                inputs = self.processor(text=prompts, images=pics, padding=True, return_tensors="pt")
            else:
                inputs = self.tokenizer(prompts, padding=True, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            with torch.set_grad_enabled(grad):
                out = self.model(**inputs, output_hidden_states=True)
            outs.append(out.hidden_states[-1][:, -1, :].float())
        return torch.cat(outs) if outs else torch.zeros(0, self.dim)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return l2_normalize(self.embed(list(texts), [None] * len(texts))).cpu().numpy().astype(np.float32)

    @torch.inference_mode()
    def encode_images(self, images: Sequence[ImageLike]) -> np.ndarray:
        return l2_normalize(self.embed([None] * len(images), list(images))).cpu().numpy().astype(np.float32)

    @torch.inference_mode()
    def encode_listings(self, texts: Sequence[str], images: Sequence[ImageLike | None]) -> np.ndarray:
        return l2_normalize(self.embed(list(texts), list(images))).cpu().numpy().astype(np.float32)
