"""Parse what a model really emits into an attribute dict; never raises.

``parse_attributes(text) -> (attrs, valid, reason)``:

- ``attrs``: canonical keys (aliases resolved: ``Color -> colour``) and normalised values; unknown
  keys dropped; numbers coerced to text; lists of scalars joined (``["black", "red"] ->
  "black/red"``); a nested ``{"value": x}`` or ``{"name": x}`` unwrapped; other nested objects,
  booleans and null-like values (``null``, ``"unknown"``, ``"n/a"``) dropped.
- ``valid``: a JSON object was recovered (strictly, or after the repairs below).
- ``reason``: None for a clean object; otherwise what was wrong, ``; ``-separated (repairs made,
  keys dropped or coerced, or why nothing could be parsed).

Recovery, in order: the content of a ```` ```json ```` fence; otherwise every balanced ``{...}``
in the text (prose before and after ignored), the largest first; each candidate is tried as
JSON, then repaired (trailing commas, Python literals ``True/False/None``, single quotes through
``ast.literal_eval``, unquoted keys, smart quotes, a truncated object closed). An object that
wraps the attributes under one non-schema key (``{"attributes": {...}}``, ``{"product": {...}}``)
or a list of objects (first one taken) is unwrapped. Text without any object falls back to
``key: value`` lines (``valid`` False).
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from afmrl.attributes.schema import DEFAULT_SCHEMA, AttributeSchema

_FENCE_RE = re.compile(r"```(?:json|JSON|javascript|python|js)?\s*\n?(.*?)(?:```|$)", re.DOTALL)
_TRAILING_COMMA_RE = re.compile(r",\s*([}\]])")
_UNQUOTED_KEY_RE = re.compile(r"([{,]\s*)([A-Za-z_][\w \-]*?)(\s*:)")
_LINE_KV_RE = re.compile(r"^\s*[-*•]?\s*\"?([A-Za-z][\w \-]{0,30}?)\"?\s*[:=]\s*(.+?)\s*,?\s*$")
_SMART = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
WRAPPER_VALUE_KEYS = ("value", "name", "text", "label")


@dataclass
class ParseResult:
    attrs: dict[str, str]
    valid: bool
    reason: str | None
    strict: bool = False  # the whole output was exactly one JSON object (a fence around it allowed)
    repairs: list[str] = field(default_factory=list)
    emitted_keys: int = 0  # keys in the recovered object
    kept_keys: int = 0  # of which schema keys with a usable value
    dropped: list[str] = field(default_factory=list)  # "key (why)"
    coerced: list[str] = field(default_factory=list)

    def as_tuple(self) -> tuple[dict[str, str], bool, str | None]:
        return self.attrs, self.valid, self.reason


def _candidates(text: str) -> list[str]:
    """Balanced {...} spans (string-aware, both quote kinds), largest first; an unclosed tail last."""
    spans: list[tuple[int, int]] = []
    stack: list[int] = []
    quote: str | None = None
    escaped = False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'" and stack:
            # an apostrophe inside a word (don't, men's) is not a quote
            if ch == "'" and i > 0 and text[i - 1].isalnum() and i + 1 < len(text) and text[i + 1].isalnum():
                continue
            quote = ch
        elif ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            start = stack.pop()
            if not stack:
                spans.append((start, i + 1))
    out = [text[a:b] for a, b in sorted(spans, key=lambda s: s[0] - s[1])]
    if stack:  # truncated generation: an object that never closed
        out.append(text[stack[0]:])
    return out


def _close_truncated(s: str) -> str:
    """Close open strings, brackets and braces of a truncated object."""
    quote: str | None = None
    escaped = False
    closers: list[str] = []
    for ch in s:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "{[":
            closers.append("}" if ch == "{" else "]")
        elif ch in "}]" and closers:
            closers.pop()
    out = s + (quote or "")
    out = re.sub(r",\s*$", "", out.rstrip())
    out = re.sub(r"[:]\s*$", ": null", out)
    if re.search(r'[{,]\s*"[^"]*"$', out):  # a dangling key without a value
        out = out + ": null"
    return out + "".join(reversed(closers))


def _replace_outside_strings(s: str, mapping: dict[str, str]) -> str:
    pattern = re.compile(r"\b(" + "|".join(mapping) + r")\b")
    parts = re.split(r'("(?:[^"\\]|\\.)*")', s)
    return "".join(p if i % 2 else pattern.sub(lambda m: mapping[m.group(1)], p) for i, p in enumerate(parts))


def _try_load(candidate: str, truncated: bool) -> tuple[Any, list[str]] | None:
    """JSON first, then the repairs in order; returns (object, repairs made) or None."""
    try:
        return json.loads(candidate), []
    except (json.JSONDecodeError, ValueError, RecursionError):
        pass
    repairs: list[str] = []
    s = candidate
    if truncated:
        s = _close_truncated(s)
        repairs.append("closed a truncated object")
    if s.translate(_SMART) != s:
        s = s.translate(_SMART)
        repairs.append("smart quotes")
    attempts: list[tuple[str, str]] = [("", s)] if s != candidate else []
    no_trailing = _TRAILING_COMMA_RE.sub(r"\1", s)
    if no_trailing != s:
        attempts.append(("trailing comma", no_trailing))
        s = no_trailing
    pythonic = _replace_outside_strings(s, {"True": "true", "False": "false", "None": "null"})
    if pythonic != s:
        attempts.append(("python literals", pythonic))
        s = pythonic
    quoted = _UNQUOTED_KEY_RE.sub(lambda m: f'{m.group(1)}"{m.group(2).strip()}"{m.group(3)}', s)
    if quoted != s:
        attempts.append(("unquoted keys", quoted))
    for label, attempt in attempts:
        try:
            made = [a for a, _ in attempts[: attempts.index((label, attempt)) + 1] if a]
            return json.loads(attempt), repairs + made
        except (json.JSONDecodeError, ValueError, RecursionError):
            continue
    # single quotes, Python literals: a Python dict display (closed first if truncated)
    for attempt in (_TRAILING_COMMA_RE.sub(r"\1", candidate.translate(_SMART)), _close_truncated(candidate.translate(_SMART))):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escape sequences in model text
                return ast.literal_eval(attempt), repairs + ["python dict syntax"]
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return None


def _unwrap(obj: Any, schema: AttributeSchema, notes: list[str]) -> Any:
    for _ in range(3):
        if isinstance(obj, list):
            first = next((x for x in obj if isinstance(x, dict)), None)
            if first is None:
                return obj
            notes.append("took the first object of a list")
            obj = first
            continue
        if isinstance(obj, dict) and len(obj) == 1:
            (key, value), = obj.items()
            inner_keys = [k for k in value if schema.canonical_key(k)] if isinstance(value, dict) else []
            if (schema.canonical_key(key) is None and isinstance(value, dict | list)) or inner_keys:
                notes.append(f"unwrapped {key!r}")
                obj = value
                continue
        return obj
    return obj


def _coerce_value(key: str, value: Any) -> tuple[Any, str | None]:
    """(usable scalar or list, note) or (None, why dropped)."""
    if isinstance(value, bool):
        return None, "boolean"
    if isinstance(value, int | float):
        return str(value) if value == value else None, "number coerced to text"
    if isinstance(value, dict):
        for k in WRAPPER_VALUE_KEYS:
            if k in value and isinstance(value[k], str | int | float) and not isinstance(value[k], bool):
                return str(value[k]), "nested value unwrapped"
        return None, "nested object"
    if isinstance(value, list | tuple):
        scalars = [str(v) for v in value if isinstance(v, str | int | float) and not isinstance(v, bool)]
        if not scalars:
            return None, "list without text"
        return scalars, "list joined"
    if value is None:
        return None, None
    return value, None


def _attrs_from_object(obj: dict[str, Any], schema: AttributeSchema, res: ParseResult) -> None:
    res.emitted_keys = len(obj)
    for raw_key, raw_value in obj.items():
        key = schema.canonical_key(raw_key)
        if key is None:
            res.dropped.append(f"{raw_key} (unknown key)")
            continue
        value, note = _coerce_value(key, raw_value)
        if value is None:
            if note:
                res.dropped.append(f"{key} ({note})")
            continue
        norm = schema.normalize({key: value}).get(key)
        if not norm:
            continue  # null-like ("unknown", "n/a"): the model says it does not know
        if note:
            res.coerced.append(f"{key} ({note})")
        if key in res.attrs:
            res.dropped.append(f"{raw_key} (duplicate of {key})")
            continue
        res.attrs[key] = norm
        res.kept_keys += 1
    res.attrs = schema.ordered(res.attrs)


def _reason(res: ParseResult) -> str | None:
    parts = []
    if res.repairs:
        parts.append("repaired: " + ", ".join(dict.fromkeys(res.repairs)))
    if res.dropped:
        parts.append("dropped: " + ", ".join(res.dropped))
    if res.coerced:
        parts.append("coerced: " + ", ".join(res.coerced))
    return "; ".join(parts) or None


def _key_value_lines(text: str, schema: AttributeSchema) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for line in text.splitlines():
        m = _LINE_KV_RE.match(line)
        if m and schema.canonical_key(m.group(1)) is not None:
            found.setdefault(m.group(1), m.group(2).strip().strip('"').strip("'"))
    return found


def parse_detailed(text: Any, schema: AttributeSchema = DEFAULT_SCHEMA) -> ParseResult:
    """The full parse record (``parse_attributes`` returns its first three fields)."""
    res = ParseResult(attrs={}, valid=False, reason=None)
    try:
        if isinstance(text, dict):
            text = json.dumps(text)
        if text is None or not isinstance(text, str | bytes):
            res.reason = f"not text ({type(text).__name__})"
            return res
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        stripped = text.strip()
        if not stripped:
            res.reason = "empty output"
            return res
        fences = [m for m in _FENCE_RE.finditer(stripped) if "{" in m.group(1)]
        sources = [(m.group(1).strip(), not (stripped[: m.start()] + stripped[m.end():]).strip()) for m in fences]
        sources.append((stripped, True))
        for source, only_thing in sources:
            for cand in _candidates(source):
                truncated = not cand.rstrip().endswith("}")
                loaded = _try_load(cand, truncated)
                if loaded is None:
                    continue
                obj, repairs = loaded
                notes: list[str] = []
                obj = _unwrap(obj, schema, notes)
                if not isinstance(obj, dict):
                    continue
                res.valid = True
                res.repairs = repairs + notes
                if cand.strip() != source or not only_thing:
                    res.repairs.append("ignored text around the object")
                res.strict = not res.repairs
                _attrs_from_object(obj, schema, res)
                res.reason = _reason(res)
                return res
        lines = _key_value_lines(stripped, schema)
        if lines:
            _attrs_from_object(lines, schema, res)
            res.reason = "not JSON: read key: value lines" + (f"; {_reason(res)}" if _reason(res) else "")
            return res
        res.reason = "no JSON object found" if "{" not in stripped else "unparseable JSON object"
        return res
    except Exception as exc:  # never raise: a parser bug must not stop a batch of generations
        res.attrs, res.valid = {}, False
        res.reason = f"parser error: {type(exc).__name__}: {exc}"
        return res


def parse_attributes(text: Any, schema: AttributeSchema = DEFAULT_SCHEMA) -> tuple[dict[str, str], bool, str | None]:
    """``(attrs, valid, reason)`` from raw model output; never raises (see the module docstring)."""
    return parse_detailed(text, schema).as_tuple()
