"""Load an attribute-extraction MLLM (tiny local folder or a real id) through one code path.

``load_mllm(path_or_id)`` registers :class:`AfmrlQwen2VLProcessor` with ``AutoProcessor`` and then
calls ``from_pretrained``. The processor subclass drops the video processor (Qwen2-VL's video
processor needs torchvision, which this project does not use); everything else is the stock
``Qwen2VLProcessor``. Real ids (``Qwen/Qwen2-VL-2B-Instruct``, whose ``preprocessor_config.json``
names the stock class) and the tiny folders written by :mod:`afmrl.models.tiny` go through the
same function; a text-only causal LM folder gets its tokenizer as the "processor". The LLaVA-style
extractor (:mod:`afmrl.models.llava`, ``model_type: afmrl_llava``) is registered with the Auto classes
here too, so its folders load through the same function.

``min_pixels`` / ``max_pixels`` cap the image size (the number of vision tokens), which is what
keeps Qwen2-VL's memory in check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import Qwen2VLProcessor

from afmrl.digest import digest_bytes, folder_digest

VLM_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "afmrl_llava")
FIXED_SIZE_MODEL_TYPES = ("afmrl_llava",)  # images resized to one square size: the pixel caps do not apply


class AfmrlQwen2VLProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without a video processor (images and text only)."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        kwargs.pop("video_processor", None)
        super().__init__(image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kwargs)


_REGISTERED = False


def register_processor() -> None:
    """Make ``AutoProcessor`` resolve Qwen2-VL configs (and our saved class name) to the subclass."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AutoProcessor, Qwen2VLConfig

    from afmrl.models.llava import register as register_llava

    AutoProcessor.register(Qwen2VLConfig, AfmrlQwen2VLProcessor, exist_ok=True)
    register_llava()  # the LLaVA-style extractor's config, model and processor (model_type afmrl_llava)
    _REGISTERED = True


@dataclass
class LoadedMLLM:
    model: Any
    processor: Any  # a processor for a VLM, a tokenizer for a text-only LM
    is_vlm: bool
    name: str
    fingerprint: str

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)


def model_type_of(path_or_id: str | Path) -> str:
    from transformers import AutoConfig

    from afmrl.errors import ConfigError

    try:
        return AutoConfig.from_pretrained(str(path_or_id)).model_type
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model {str(path_or_id)!r} (a folder or hub id): {exc}".splitlines()[0],
                          field="mllm.model") from None  # fmt: skip


def load_processor(path_or_id: str | Path, *, min_pixels: int | None = None, max_pixels: int | None = None,
                   model_type: str | None = None) -> Any:  # fmt: skip
    """The processor of a VLM (video processor dropped, pixel caps applied) or a text LM's tokenizer."""
    from transformers import AutoTokenizer

    register_processor()
    name = str(path_or_id)
    model_type = model_type or model_type_of(name)
    if model_type not in VLM_MODEL_TYPES:
        tok = AutoTokenizer.from_pretrained(name)
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok
    if model_type in FIXED_SIZE_MODEL_TYPES:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(name)
        processor.tokenizer.padding_side = "left"
        return processor
    processor = AfmrlQwen2VLProcessor.from_pretrained(name)
    ip = processor.image_processor
    size = dict(ip.size) if getattr(ip, "size", None) else {}
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
    if size:
        ip.size = type(ip.size)(**size) if not isinstance(ip.size, dict) else size
    processor.tokenizer.padding_side = "left"  # batched generation pads on the left
    return processor


BASE_FILE = "base.json"  # written by the tiny stage when mllm.model names a real model: {"model": "<id or folder>"}
TINY = "tiny"  # mllm.model's default: the tiny offline model the pipeline builds (the tiny stage) ...
TINY_DIR = "outputs/models/tiny-vlm"  # ... in its dvc.yaml output folder


def resolve_model(path_or_id: str | Path) -> str:
    """The model ``mllm.model`` or a stage's ``--base`` means: a folder holding ``base.json`` (the tiny
    stage's output when ``mllm.model`` is a hub id or folder) -> the model it names; ``tiny`` -> the tiny
    stage's folder (:data:`TINY_DIR`); anything else as it is. SFT, RAR and the extractor load through it."""
    from afmrl.errors import ConfigError

    name = TINY_DIR if str(path_or_id) == TINY else str(path_or_id)
    pointer = Path(name) / BASE_FILE
    if not pointer.is_file():
        return name
    import json

    try:
        target = json.loads(pointer.read_text(encoding="utf-8"))["model"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"not a base pointer {{\"model\": ...}}: {exc}", file=str(pointer), field="model") from None
    if not isinstance(target, str) or not target or Path(target).resolve() == Path(name).resolve():
        raise ConfigError(f"base pointer names no other model: {target!r}", file=str(pointer), field="model")
    return target


def image_pixel_cap(processor: Any, max_pixels: int | None) -> int | None:
    """The ``max_pixels`` to store prompt images with (:func:`afmrl.training.sft.prompt_image` keeps at most 4 x
    that): ``mllm.max_pixels``, or for a fixed-size image processor (the LLaVA-style extractor resizes every
    image to ``image_size`` squared) half its area where that is larger, so a stored photo up to 2:1 keeps
    its short side at ``image_size`` or more (shrinking it below would only lose detail)."""
    size = getattr(getattr(processor, "image_processor", None), "size", None)
    height, width = (getattr(size, "height", None), getattr(size, "width", None)) if size is not None else (None, None)
    if isinstance(size, dict):
        height, width = size.get("height"), size.get("width")
    if not (height and width) or max_pixels is None:
        return max_pixels
    return max(int(max_pixels), int(height) * int(width) // 2)


def model_fingerprint(path_or_id: str | Path) -> str:
    """A short hash of the weights' identity: a local folder's files (:func:`afmrl.digest.folder_digest`),
    or the id itself."""
    p = Path(str(path_or_id))
    return (folder_digest(p) if p.is_dir() else digest_bytes(str(path_or_id)))[:16]


def load_mllm(
    path_or_id: str | Path,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    dtype: str = "float32",
    device: str = "cpu",
) -> LoadedMLLM:
    """Register the processor subclass, then ``from_pretrained`` the model and its processor (``path_or_id``
    through :func:`resolve_model`: ``tiny``, a base pointer folder, a folder or a hub id)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    register_processor()
    name = resolve_model(path_or_id)
    model_type = model_type_of(name)
    processor = load_processor(name, min_pixels=min_pixels, max_pixels=max_pixels, model_type=model_type)
    is_vlm = model_type in VLM_MODEL_TYPES
    torch_dtype = getattr(torch, dtype)
    cls = AutoModelForImageTextToText if is_vlm else AutoModelForCausalLM
    model = cls.from_pretrained(name, dtype=torch_dtype).to(device)
    model.eval()
    return LoadedMLLM(model=model, processor=processor, is_vlm=is_vlm, name=name, fingerprint=model_fingerprint(name))


SMALL_MODEL_PARAMETERS = 50_000_000


@contextlib.contextmanager
def cpu_threads_for(model: Any, device: str = "cpu") -> Iterator[None]:
    """One intra-op thread while a small model (< 50M parameters, e.g. the tiny offline extractor) runs on
    CPU: its matmuls are too small to split, and threads waiting on each other cost more than they save
    (tiny Qwen2-VL generation on a loaded 2-core machine: 0.10 s per listing with one thread, 2.3 s with
    two). Larger models and GPUs keep torch's setting."""
    import torch

    small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS
    if device != "cpu" or not small:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
