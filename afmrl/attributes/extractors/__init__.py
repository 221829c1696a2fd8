"""Attribute extractors: ``rules`` (lexicon + patterns, deterministic) and ``mllm`` (generation)."""
