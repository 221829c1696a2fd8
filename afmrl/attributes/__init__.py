"""Key product attributes: schema and normalisation, parsing model output, extraction, evaluation.

- :mod:`afmrl.attributes.schema`     the keys, their types and vocabularies; ``serialize_attributes``
- :mod:`afmrl.attributes.normalize`  one canonical form per value (case, units, synonyms)
- :mod:`afmrl.attributes.similarity` weighted attribute agreement (the AGCL loss's signal)
- :mod:`afmrl.attributes.parse`      robust parsing of what a model emits
- :mod:`afmrl.attributes.extractors` ``rules`` (lexicon + patterns) and ``mllm`` (generation)
- :mod:`afmrl.attributes.evaluate`   per-key accuracy, micro/macro F1, valid-JSON rate
"""

from afmrl.attributes.schema import (
    DEFAULT_SCHEMA,
    AttributeSchema,
    AttributeSpec,
    enhanced_text,
    serialize_attributes,
)

__all__ = ["DEFAULT_SCHEMA", "AttributeSchema", "AttributeSpec", "enhanced_text", "serialize_attributes"]
