"""The extraction prompt and the target format (one JSON object), shared by extraction, SFT and RAR.

Messages are plain strings (``{"role": "user", "content": "..."}``); for a listing with an image
the caller puts an image block first (:func:`build_messages` with ``image=True``, or trl's
``prepare_multimodal_messages`` in GRPO). ``PROMPT_VERSION`` enters the extraction cache key, so a
changed prompt regenerates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from afmrl.attributes.schema import DEFAULT_SCHEMA, AttributeSchema

PROMPT_VERSION = "attrs-v1"
SYSTEM_PROMPT = "You read product listings and extract their key attributes. Answer with one JSON object only."


def instruction(keys: Sequence[str], schema: AttributeSchema = DEFAULT_SCHEMA) -> str:
    described = "; ".join(f"{k} ({schema[k].description})" if k in schema else k for k in keys)
    return (
        f"Extract the product's attributes: {described}. Answer with one JSON object that uses only these keys, "
        'e.g. {"brand": "...", "colour": "..."}. Leave out a key you cannot tell. Values are short text; '
        'sizes keep their unit ("500 ml", "6.1 in").'
    )


def listing_block(title: str | None, description: str | None = None, max_description_chars: int = 300) -> str:
    lines = [f"Title: {(title or '').strip()}"]
    desc = (description or "").strip()
    if desc:
        if len(desc) > max_description_chars:
            desc = desc[:max_description_chars].rsplit(" ", 1)[0] + " ..."
        lines.append(f"Description: {desc}")
    return "\n".join(lines)


def user_text(title: str | None, description: str | None, keys: Sequence[str], *,
              schema: AttributeSchema = DEFAULT_SCHEMA, max_description_chars: int = 300) -> str:  # fmt: skip
    return f"{listing_block(title, description, max_description_chars)}\n\n{instruction(keys, schema)}"


def build_messages(title: str | None, description: str | None, keys: Sequence[str], *, image: bool = False,
                   schema: AttributeSchema = DEFAULT_SCHEMA, max_description_chars: int = 300,
                   system: str | None = SYSTEM_PROMPT) -> list[dict[str, Any]]:  # fmt: skip
    """Chat messages for one listing; ``image=True`` puts an image block before the text (processor-side)."""
    text = user_text(title, description, keys, schema=schema, max_description_chars=max_description_chars)
    content: Any = [{"type": "image"}, {"type": "text", "text": text}] if image else text
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": content})
    return messages


def format_target(attrs: Mapping[str, Any], keys: Sequence[str] | None = None,
                  schema: AttributeSchema = DEFAULT_SCHEMA) -> str:  # fmt: skip
    """The completion the model should write: compact JSON, schema key order, known keys only."""
    norm = schema.normalize(attrs)
    if keys is not None:
        norm = {k: v for k, v in norm.items() if k in keys}
    return json.dumps(norm, ensure_ascii=False)
