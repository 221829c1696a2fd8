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

Hostile answers cost bounded work and always come back writable:

- an answer longer than :data:`MAX_ANSWER_CHARS` (64 KiB of characters) is cut to that length
  before parsing and the reason says so (``truncated: ...``); at most :data:`MAX_CANDIDATES`
  candidate objects are tried; every scan is linear in the (capped) length;
- lone UTF-16 surrogates (``"\ud800"`` in the text, or escaped in its JSON) become U+FFFD in
  the attributes and the reason (:func:`writable_text`), so they can be written to Parquet,
  SQLite or JSON; the extract stage stores the raw answer through the same function.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from afmrl.attributes.schema import DEFAULT_SCHEMA, AttributeSchema

MAX_ANSWER_CHARS = 64 * 1024  # longer answers are truncated for parsing (the reason says so)
MAX_CANDIDATES = 32  # candidate objects tried per answer, largest first (fences get at most half)

_FENCE_RE = re.compile(r"```(?:json|JSON|javascript|python|js)?\s*\n?(.*?)(?:```|$)", re.DOTALL)
_TRAILING_COMMA_RE = re.compile(r",\s*([}\]])")
# keys are short: the bounded repetition keeps the lazy scan linear in the text length
_UNQUOTED_KEY_RE = re.compile(r"([{,]\s*)([A-Za-z_][\w \-]{0,63}?)(\s*:)")
_LINE_KEY_RE = re.compile(r"[-*•]?\s*\"?([A-Za-z][\w \-]{0,30}?)\"?\s*[:=]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_QUOTE_OR_BACKSLASH = re.compile(r'["\\]')
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

    truncated_from: int | None = None  # the answer's length when it was cut to MAX_ANSWER_CHARS

    def as_tuple(self) -> tuple[dict[str, str], bool, str | None]:
        return self.attrs, self.valid, self.reason


def writable_text(text: str) -> str:
    """``text`` with every lone UTF-16 surrogate replaced by U+FFFD (a valid pair becomes its character).

    Strings with lone surrogates cannot be encoded as UTF-8: Parquet, SQLite and ``json.dumps(...,
    ensure_ascii=False)`` writers fail on them.
    """
    if not _SURROGATE_RE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


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
    out = (s + (quote or "")).rstrip()
    if out.endswith(","):
        out = out[:-1].rstrip()
    if out.endswith(":"):
        out = out + " null"
    elif out.endswith('"') and len(out) > 1:  # a dangling key without a value: {"a": 1, "b"
        opening = out.rfind('"', 0, len(out) - 1)
        if opening >= 0 and out[:opening].rstrip()[-1:] in ("{", ","):
            out = out + ": null"
    return out + "".join(reversed(closers))


def _string_spans(s: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every double-quoted string (escapes honoured; an unclosed one runs to the end).

    One pass: a regex split with ``"(?:[^"\\]|\\.)*"`` rescans to the end from every unclosed quote,
    which is quadratic on ``"\\"\\"\\"...``."""
    spans: list[tuple[int, int]] = []
    n = len(s)
    start = s.find('"')
    while start >= 0:
        pos = start + 1
        while (m := _QUOTE_OR_BACKSLASH.search(s, pos)) is not None and m.group() == "\\":
            pos = m.end() + 1  # skip the escaped character
        end = m.end() if m is not None else n
        spans.append((start, end))
        start = s.find('"', end) if end < n else -1
    return spans


def _replace_outside_strings(s: str, mapping: dict[str, str]) -> str:
    pattern = re.compile(r"\b(" + "|".join(mapping) + r")\b")
    out: list[str] = []
    pos = 0
    for a, b in _string_spans(s):
        out.append(pattern.sub(lambda m: mapping[m.group(1)], s[pos:a]))
        out.append(s[a:b])
        pos = b
    out.append(pattern.sub(lambda m: mapping[m.group(1)], s[pos:]))
    return "".join(out)


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
    """``key: value`` (or ``key = value``, bulleted, quoted key) lines with a schema key."""
    found: dict[str, Any] = {}
    for line in text.splitlines():
        m = _LINE_KEY_RE.match(line.lstrip())
        if not m or schema.canonical_key(m.group(1)) is None:
            continue
        value = line.lstrip()[m.end():].strip()
        if value.endswith(",") and value[:-1].rstrip():
            value = value[:-1].rstrip()
        if value:
            found.setdefault(m.group(1), value.strip().strip('"').strip("'"))
    return found


def _as_text(text: Any, res: ParseResult) -> str | None:
    """The answer as a writable string of at most MAX_ANSWER_CHARS characters (None: not text)."""
    if isinstance(text, dict):
        text = json.dumps(text)
    if text is None or not isinstance(text, str | bytes):
        res.reason = f"not text ({type(text).__name__})"
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if len(text) > MAX_ANSWER_CHARS:
        res.truncated_from = len(text)
        text = text[:MAX_ANSWER_CHARS]
    return writable_text(text)


def _parse(text: str, schema: AttributeSchema, res: ParseResult) -> None:
    stripped = text.strip()
    if not stripped:
        res.reason = "empty output"
        return
    sources: list[tuple[str, bool]] = []
    for m in _FENCE_RE.finditer(stripped):
        body = m.group(1)
        if "{" in body:  # the fence is the only thing iff it spans the whole (stripped) answer
            sources.append((body.strip(), m.start() == 0 and m.end() == len(stripped)))
            if len(sources) >= MAX_CANDIDATES // 2:
                break
    sources.append((stripped, True))
    tried = 0
    for k, (source, only_thing) in enumerate(sources):
        limit = MAX_CANDIDATES if k == len(sources) - 1 else MAX_CANDIDATES // 2  # the whole text gets the rest
        for cand in _candidates(source):
            if tried >= limit:
                break
            tried += 1
            loaded = _try_load(cand, not cand.rstrip().endswith("}"))
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
            return
    lines = _key_value_lines(stripped, schema)
    if lines:
        _attrs_from_object(lines, schema, res)
        res.reason = "not JSON: read key: value lines" + (f"; {_reason(res)}" if _reason(res) else "")
        return
    res.reason = "no JSON object found" if "{" not in stripped else "unparseable JSON object"


def _writable_value(value: Any) -> Any:
    if isinstance(value, str):
        return writable_text(value)
    if isinstance(value, list | tuple):
        return [_writable_value(v) for v in value]
    return value


def parse_detailed(text: Any, schema: AttributeSchema = DEFAULT_SCHEMA) -> ParseResult:
    """The full parse record (``parse_attributes`` returns its first three fields)."""
    res = ParseResult(attrs={}, valid=False, reason=None)
    try:
        answer = _as_text(text, res)
        if answer is not None:
            _parse(answer, schema, res)
    except Exception as exc:  # never raise: a parser bug must not stop a batch of generations
        res.attrs, res.valid, res.strict = {}, False, False
        res.reason = f"parser error: {type(exc).__name__}: {exc}"
    if res.truncated_from is not None:
        res.strict = False
        note = f"truncated: the answer has {res.truncated_from} characters, only the first {MAX_ANSWER_CHARS} were parsed"
        res.reason = f"{note}; {res.reason}" if res.reason else note
    # JSON escapes (\\ud800) can put lone surrogates back into keys and values: make them writable
    res.attrs = {writable_text(k): _writable_value(v) for k, v in res.attrs.items()}
    res.dropped = [writable_text(d) for d in res.dropped]
    res.coerced = [writable_text(c) for c in res.coerced]
    res.reason = writable_text(res.reason) if res.reason is not None else None
    return res


def parse_attributes(text: Any, schema: AttributeSchema = DEFAULT_SCHEMA) -> tuple[dict[str, str], bool, str | None]:
    """``(attrs, valid, reason)`` from raw model output; never raises (see the module docstring)."""
    return parse_detailed(text, schema).as_tuple()
