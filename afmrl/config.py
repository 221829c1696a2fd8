"""One typed configuration for every stage.

The tree is loaded from ``params.yaml`` (the file DVC reads as well) and can be overridden with
dotted ``key=value`` pairs (``--set synth.seed=3`` on the CLI). Unknown or ill-typed keys are
rejected with their dotted path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from afmrl.errors import ConfigError

# ISO 4217 codes seen in real product feeds; extend through params.yaml (validate.currencies).
DEFAULT_CURRENCIES = [
    "AED", "ARS", "AUD", "BGN", "BRL", "CAD", "CHF", "CLP", "CNY", "COP", "CZK", "DKK", "EGP", "EUR",
    "GBP", "HKD", "HRK", "HUF", "IDR", "ILS", "INR", "ISK", "JPY", "KRW", "KWD", "MAD", "MXN", "MYR",
    "NGN", "NOK", "NZD", "PEN", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR", "SEK", "SGD",
    "THB", "TRY", "TWD", "UAH", "USD", "VND", "ZAR",
]  # fmt: skip


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SynthConfig(Section):
    """Synthetic catalogue (`afmrl data synth`)."""

    seed: int = 0
    n_base_products: int = Field(24, ge=1)
    near_duplicates: int = Field(2, ge=0, description="variants per base product, each differing in one attribute")
    listings_per_product: int = Field(4, ge=1)
    image_size: int = Field(160, ge=48, le=1024)
    currencies: list[str] = ["USD", "EUR", "GBP"]
    provided_attribute_rate: float = Field(0.5, ge=0.0, le=1.0, description="chance a seller states an attribute")


DATA_FORMATS = ("synthetic", "catalogue", "grocery-store", "wdc-products", "offers")
COLUMN_KEYS = ("id", "title", "product", "category", "brand", "description", "price", "currency", "image")


def _as_text(value: Any) -> Any:
    """DVC writes ``-S`` values back unquoted: a column named ``2024`` or a path ``1`` comes back a number."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class ColumnsConfig(Section):
    """The offers importer's column mapping (``data.format: offers``): catalogue field -> CSV column.

    Every key is present (null: not mapped) so that ``dvc exp run -S data.columns.id=sku`` can set it;
    ``attr`` maps extra provided attributes (``-S +data.columns.attr.size=size``)."""

    id: str | None = Field(None, description="offer id column; null: <file name>-<line>")
    title: str | None = Field(None, description="title column (required for offers)")
    product: str | None = Field(None, description="identical-product group (e.g. cluster id); null: unlabeled")
    category: str | None = None
    brand: str | None = Field(None, description="becomes a provided attribute")
    description: str | None = None
    price: str | None = None
    currency: str | None = None
    image: str | None = Field(None, description="image path (relative to the CSV, absolute, or an fsspec URI)")
    attr: dict[str, str] = Field(default_factory=dict, description="attribute name -> column")

    @field_validator(*COLUMN_KEYS, mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        value = _as_text(value)
        return None if value == "" else value

    @field_validator("attr", mode="before")
    @classmethod
    def _attr(cls, value: Any) -> Any:
        if value is None:  # `attr:` with nothing under it, as DVC writes an emptied mapping
            return {}
        if isinstance(value, dict):
            return {str(k): _as_text(v) for k, v in value.items()}
        return value

    def mapping(self) -> dict[str, str]:
        """The importer's mapping: the set keys, ``attr.<name>`` for the attributes."""
        out = {k: v for k in COLUMN_KEYS if (v := getattr(self, k)) is not None}
        out.update({f"attr.{name}": column for name, column in self.attr.items()})
        return out


class DataConfig(Section):
    """The pipeline's input catalogue (the ``ingest`` stage): its format and where it is."""

    format: Literal["synthetic", "catalogue", "grocery-store", "wdc-products", "offers"] = Field(
        "synthetic", description="synthetic (synth.*) | catalogue (canonical folder) | grocery-store | wdc-products | "
        "offers (a CSV with data.columns)"
    )  # fmt: skip
    path: str = Field("data/sources", description="folder or file; any fsspec URI (s3://, gs://, ...); synthetic: unused")
    columns: ColumnsConfig = Field(ColumnsConfig(), validate_default=True, description="offers: column mapping")
    max_products: int | None = Field(None, ge=1, description="smoke runs: keep the listings of this many products")

    @field_validator("format", "path", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _as_text(value)

    @field_validator("format", mode="before")
    @classmethod
    def _known_format(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in DATA_FORMATS:
            raise PydanticCustomError("data_format", "unknown format {value}; use one of {formats}",
                                      {"value": repr(value), "formats": ", ".join(DATA_FORMATS)})  # fmt: skip
        return value

    @field_validator("path", mode="before")
    @classmethod
    def _path_given(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("a folder, file or URI is needed (synthetic ignores it: keep data/sources)")
        return value

    @field_validator("columns")
    @classmethod
    def _offers_title(cls, columns: ColumnsConfig, info: ValidationInfo) -> ColumnsConfig:
        if info.data.get("format") == "offers" and columns.title is None:
            raise ValueError("data.format offers needs data.columns.title (the CSV's title column)")
        return columns


class SplitConfig(Section):
    """Product-level splits; every listing of one product lands in the same split."""

    seed: int = 0
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be < 1")
        return self


class ValidateConfig(Section):
    """Great Expectations gate (`afmrl validate`)."""

    max_fail_share: float = Field(0.05, ge=0.0, le=1.0, description="fail the stage above this quarantined share")
    currencies: list[str] = DEFAULT_CURRENCIES
    check_images: bool = True
    image_workers: int = Field(4, ge=1)
    max_image_pixels: int = Field(60_000_000, ge=1)
    data_docs: bool = Field(False, description="also build GX data docs (HTML) next to the report")


class EncoderConfig(Section):
    """Representation model (``dual``: EfficientNet-Lite0 + MiniLM towers with projection heads)."""

    kind: Literal["dual", "clip", "vlm2vec"] = "dual"
    image_model: str = "efficientnet-lite0"
    text_model: str = Field("all-MiniLM-L6-v2", description="hub id or folder; the MiniLM name uses the packaged copy")
    model: str | None = Field(None, description="hub id or folder for kind=clip / vlm2vec")
    dim: int = Field(256, ge=8)
    hidden: int = Field(512, ge=8, description="hidden width of the 2-layer projection heads")
    head: Literal["mlp", "residual"] = Field("mlp", description="residual: x + MLP(x), last layer at zero (starts "
                                             "at zero-shot); needs the text tower's width = dim")  # fmt: skip
    text_pooling: Literal["mean", "attention"] = Field("mean", description="attention: a learned weight per token "
                                                        "(uniform at the start: mean pooling); the frozen-mode cache "
                                                        "then holds every token's features (float16)")  # fmt: skip
    fusion: Literal["mean", "gate", "residual"] = Field("mean", description="a listing's image and text: mean, a "
                                                        "learned gate, or residual (image + m * text, m from 0)")  # fmt: skip
    image_size: int = Field(224, ge=32)
    max_tokens: int = Field(64, ge=8, description="text truncation (descriptions are cut first)")
    batch_size: int = Field(32, ge=1, description="encoding batch size")
    attributes_in_text: bool = True
    attributes_source: Literal["none", "provided", "rules", "file"] = "provided"
    attributes_file: str | None = Field(None, description="extraction output (Parquet) for attributes_source=file")


class TrainConfig(Section):
    """Contrastive training of the representation model (``afmrl train``)."""

    method: Literal["infonce", "gist", "agcl", "oracle"] = "agcl"
    mode: Literal["frozen", "full"] = Field("frozen", description="frozen: cached backbone features, heads only")
    pairing: Literal["auto", "image_text", "title_description", "same_product", "photo_catalogue"] = "auto"
    steps: int = Field(300, ge=1)
    batch_size: int = Field(64, ge=2, description="the global batch (each of N processes takes batch_size / N)")
    lr: float = Field(1e-3, gt=0)
    backbone_lr: float = Field(1e-5, gt=0, description="learning rate of the towers in full mode")
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(20, ge=0)
    grad_clip: float = Field(1.0, ge=0, description="0 disables clipping")
    seed: int = 0
    temperature: float = Field(0.05, gt=0)
    learnable_temperature: bool = True
    sampler: Literal["random", "hard"] = "random"
    neighbour_ratio: float = Field(0.5, ge=0, le=1, description="share of a hard batch filled with attribute neighbours")
    no_duplicate_products: bool = Field(False, description="never two listings of one known product in a batch")
    tau_hard: float = Field(0.5, ge=0, le=1, description="AGCL: attribute similarity from which a negative is hard")
    tau_fn: float = Field(1.0, ge=0, le=1, description="AGCL: similarity from which a negative is a false negative")
    beta: float = Field(2.0, ge=1, description="AGCL: weight of hard negatives in the denominator")
    fn_as_positive: bool = Field(False, description="AGCL: count false negatives as extra positives")
    positive_weight: float = Field(1.0, gt=0, le=1, description="AGCL with fn_as_positive: a false negative's "
                                   "weight in the numerator (1: a full positive)")  # fmt: skip
    intra_modal: bool = Field(False, description="AGCL: image-image / text-text negatives beside the cross-modal ones")
    agcl_guide: bool = Field(False, description="AGCL: also mask what GIST's zero-shot guide rates closer than the "
                             "positive (margin train.gist_margin)")  # fmt: skip
    guide_spares: list[str] = Field(default_factory=list, description="AGCL with agcl_guide: the guide never "
                                    "masks a pair whose attributes state different values for one of these keys "
                                    "(e.g. [capacity, size, model]: near-duplicates the attributes tell apart)")
    mined_negatives: int = Field(0, ge=0, description="per pair, this many catalogue-wide hard negatives mined before "
                                 "training from the zero-shot guide's neighbours of other products (0: in-batch only; "
                                 "frozen mode)")  # fmt: skip
    mining_attribute_bonus: float = Field(0.0, ge=0, description="AGCL: mining ranks a candidate that differs from "
                                          "the pair's item in few key attributes (a hard negative) by guide "
                                          "similarity + this")  # fmt: skip
    attribute_weights: dict[str, float] = Field(default_factory=dict, description="AGCL: per-key weights over the "
                                                "schema's defaults (a key not named keeps its own; 0 leaves it out)")
    min_shared_keys: int = Field(2, ge=1, description="AGCL: keys both listings must state to be compared")
    gist_margin: float = Field(0.0, ge=0)
    guide_model: str = Field("zero-shot", description="GIST guide: the frozen pretrained towers")
    checkpoint_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    mini_batch_size: int | None = Field(None, ge=1, description="GradCache: embed the batch this many rows at a "
                                        "time (same gradients, less memory); null: no caching")  # fmt: skip

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _no_is_false(cls, value: Any) -> Any:
        """YAML 1.1 reads an unquoted ``no`` as false (DVC rewrites params.yaml so with ``-S``)."""
        return "no" if value is False else value

    @model_validator(mode="after")
    def _spares_need_the_guide(self) -> TrainConfig:
        if self.guide_spares and self.method == "agcl" and not self.agcl_guide:
            raise ValueError("train.guide_spares lifts the guide's masks: it needs train.agcl_guide=true")
        return self


class EvalConfig(Section):
    """Retrieval evaluation (exact search; metrics of record)."""

    split: str = Field("test", description="evaluation split; a catalogue without it is an error (no fallback)")
    ks: list[int] = [1, 5, 10]
    seed: int = 0


class IndexConfig(Section):
    """Milvus index of listing embeddings (``afmrl index build``, ``afmrl search``).

    ``uri`` falls back to MILVUS_URI, then to Milvus Lite at ``outputs/milvus.db`` (a local folder; one
    process at a time). ``http(s)://host:19530`` is a Milvus standalone/cluster (or Zilliz Cloud); its
    token comes from ``token`` or MILVUS_TOKEN and is never printed or logged.
    """

    uri: str | None = Field(None, description="null: $MILVUS_URI, else outputs/milvus.db (Milvus Lite)")
    token: SecretStr | None = Field(None, description="null: $MILVUS_TOKEN (prefer the environment)")
    index_type: Literal["auto", "FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "AUTOINDEX"] = Field(
        "auto", description="auto: FLAT on Milvus Lite, HNSW on a server"
    )
    metric: Literal["IP", "COSINE", "L2"] = Field("IP", description="IP on normalised vectors = cosine")
    params: dict[str, int | float] = Field(default_factory=dict, description="build params ({nlist}, {M, efConstruction})")
    search_params: dict[str, int | float] = Field(default_factory=dict, description="{nprobe} / {ef}; {}: defaults")
    batch_size: int = Field(256, ge=1, description="listings embedded and upserted per batch")
    collection_prefix: str = Field("afmrl_listings", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    version: str | None = Field(None, description="collection suffix; null: the encoder's fingerprint")
    alias: str = Field("afmrl_serving", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="serving alias")
    splits: list[str] = Field(default_factory=list, description="listings to index; empty: every listing")
    prune: bool = Field(True, description="delete indexed listings that are no longer in the catalogue")
    top_k: int = Field(10, ge=1, le=16384)
    workers: int = Field(1, ge=1, le=256, description="local embedding processes (listings sharded by id)")
    keep: int = Field(2, ge=1, description="collections kept per prefix after a swap (the serving one and the "
                                           "previous one for `afmrl index rollback`); older ones are dropped")
    check_sample: int = Field(50, ge=1, description="before a swap: queries sampled from the collection")
    check_min_recall: float = Field(0.9, ge=0, le=1, description="before a swap: recall@10 of the sample through "
                                                                 "the index against exact search, at least this")

    def resolved_uri(self) -> str:
        return self.uri or os.environ.get("MILVUS_URI") or "outputs/milvus.db"

    def resolved_token(self) -> str | None:
        return self.token.get_secret_value() if self.token else os.environ.get("MILVUS_TOKEN") or None

    def lite_path(self) -> Path | None:
        """The Milvus Lite file (a folder) when the index is embedded, else None (a server)."""
        uri = self.resolved_uri()
        return Path(uri).expanduser().resolve() if is_lite_uri(uri) else None


def is_lite_uri(uri: str) -> bool:
    """A Milvus Lite path (ends in .db, no server scheme) rather than a server URI."""
    return str(uri).endswith(".db") and not str(uri).startswith(("http://", "https://", "tcp://", "unix:"))


class TrackingConfig(Section):
    """MLflow tracking. ``uri`` falls back to MLFLOW_TRACKING_URI, then to a local SQLite store."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = "afmrl"

    def resolved_uri(self) -> str:
        return self.uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


class GateRule(Section):
    """One gating metric of the promotion gate (a key of ``report.json``'s ``metrics``)."""

    min_improvement: float = Field(0.0, ge=0, le=1, description="absolute gain over the champion that counts as better")
    max_regression: float = Field(0.0, ge=0, le=1, description="largest tolerated absolute drop below the champion")
    floor: float | None = Field(None, ge=0, le=1,
                                description="absolute minimum for any candidate (the first one included)")  # fmt: skip

    @field_validator("min_improvement", "max_regression", "floor", mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        """Gate metrics are fractions in [0, 1]; ``true`` would silently read as 1.0."""
        if isinstance(value, bool):
            raise ValueError("a number in [0, 1] is expected, not a bool")
        return value


class RegistryConfig(Section):
    """Model registry and promotion gate (``afmrl promote``): names, aliases, gating rules."""

    encoder_name: str = "afmrl-encoder"
    extractor_name: str = "afmrl-attribute-extractor"
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    gate: dict[str, GateRule] = Field(
        default_factory=lambda: {
            "listing_R@1": GateRule(min_improvement=0.01, max_regression=0.0, floor=0.2),
            "listing_mAP@10": GateRule(min_improvement=0.01, max_regression=0.01, floor=0.2),
        },
        description="metric -> rule; promote when no rule fails and at least one metric improves",
    )
    gate_min_queries: int = Field(200, ge=1, description="fewest evaluation queries the gate decides on")
    gate_bootstrap: int = Field(2000, ge=100, description="paired bootstrap resamples for the 95% intervals")

    @model_validator(mode="after")
    def _gate(self) -> RegistryConfig:
        if not self.gate:
            raise ValueError("registry.gate needs at least one metric")
        if self.champion_alias == self.challenger_alias:
            raise ValueError("champion_alias and challenger_alias must differ")
        return self


class TriggerConfig(Section):
    """When to retrain (``afmrl trigger``): data changed (DVC), catalogue drift (PSI), or age."""

    data_change: bool = Field(True, description="retrain when `dvc status` shows changed inputs")
    dvc_targets: list[str] = Field(default_factory=list, description="stages / .dvc files to check; empty: all")
    catalog: str = Field("data/validated", description="the current catalogue, compared with the trained-on one")
    drift_threshold: float | None = Field(0.2, gt=0, description="retrain above this PSI; null: no drift check")
    drift_features: list[Literal["category", "currency", "source", "title_length", "price", "has_image"]] = [
        "category", "title_length", "price"
    ]  # fmt: skip
    drift_bins: int = Field(10, ge=2, le=100, description="quantile bins (from the reference) per numeric feature")
    max_age_days: float | None = Field(7.0, gt=0, description="retrain when the last training is older; null: off")
    state_file: str = Field("outputs/last_training.json", description="last training time + catalogue profile")
    train_stage: str = Field("train", description="MLflow stage tag of training runs (fallback state source)")


class AttributesConfig(Section):
    """Attribute extraction (``afmrl attributes extract``) and the attribute schema's use."""

    backend: Literal["rules", "mllm"] = Field("rules", description="rules: lexicon + patterns; mllm: generation")
    keys: list[str] = Field(default_factory=list, description="keys to extract; empty: the catalogue's stated keys")
    use_provided: bool = Field(True, description="merge seller-stated attributes over extracted ones")
    weights: dict[str, float] = Field(default_factory=dict, description="similarity weight per key; empty: schema's")
    splits: list[str] = Field(default_factory=list, description="splits to extract; empty: every listing")
    max_listings: int | None = Field(None, ge=1, description="extract at most this many listings (smoke runs)")
    cache_path: str = Field("outputs/cache/extraction.sqlite", description="generation cache (SQLite)")
    min_brand_products: int = Field(2, ge=1, description="rules: a mined brand opens titles of >= this many products")
    max_brand_share: float = Field(0.5, gt=0, le=1, description="rules: ... and at most this share of all titles")


class MLLMConfig(Section):
    """The attribute-extraction MLLM: a folder or hub id, image caps and generation settings."""

    model: str = Field("tiny", description="tiny: the pipeline builds the tiny offline model (outputs/models/tiny-vlm); "
                       "else a folder or hub id (Qwen2-VL family or a text causal LM) that SFT and RAR start from")
    min_pixels: int = Field(56 * 56, ge=28 * 28, description="image processor lower pixel cap")
    max_pixels: int = Field(64 * 64, ge=28 * 28, description="image processor upper pixel cap (vision tokens)")
    use_images: bool = Field(True, description="false: text-only prompts even for listings with an image")
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    do_sample: bool = Field(False, description="greedy by default")
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)
    top_k: int = Field(50, ge=0)
    max_description_chars: int = Field(300, ge=0)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "cpu"
    seed: int = 0


class TinyConfig(Section):
    """The tiny offline extractor model (``afmrl models tiny``): random weights, a tokenizer learnt from the
    catalogue; teach it the answer format with SFT (or set ``mllm.model`` to a real model id)."""

    kind: Literal["vlm", "llava", "lm"] = Field("vlm", description="vlm: Qwen2-VL; llava: the pretrained "
                                                "EfficientNet-Lite0 image tower + a tiny Qwen2; lm: text-only Qwen2")  # fmt: skip
    vocab_size: int = Field(2048, ge=300, description="BPE vocabulary size")
    seed: int = Field(0, description="weight initialisation seed")


# trl's own settings (``sft.trl`` / ``rar.trl``: trl.SFTConfig / trl.GRPOConfig fields by their own names,
# checked against trl when the stage builds them, :func:`afmrl.training.hf.trl_args`). A key the user
# leaves out takes these values; the device settings come from ``mllm.device`` (training_device_args).
SFT_TRL_DEFAULTS: dict[str, Any] = {
    "num_train_epochs": 3.0, "max_steps": -1, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
    "learning_rate": 2e-4, "lr_scheduler_type": "constant_with_warmup", "warmup_steps": 0, "logging_steps": 1,
    "max_length": None, "completion_only_loss": True,
}  # fmt: skip
RAR_TRL_DEFAULTS: dict[str, Any] = {  # 8 prompts per step: 32 completions = 8 groups of 4
    "num_generations": 4, "per_device_train_batch_size": 32, "gradient_accumulation_steps": 1, "max_steps": 12,
    "learning_rate": 1e-3, "beta": 0.04, "temperature": 1.0, "top_p": 1.0, "max_completion_length": 64,
    "loss_type": "dapo", "logging_steps": 1, "log_completions": False,
}  # fmt: skip
# trl fields afmrl sets itself: the key -> where it comes from
SFT_TRL_OWNED = {"output_dir": "the stage's output folder (--out)", "seed": "sft.seed"}
RAR_TRL_OWNED = {"output_dir": "the stage's output folder (--out)", "seed": "rar.seed",
                 "reward_weights": "rar.retrieval_weight and rar.format_weight"}  # fmt: skip


def _trl_args(given: dict[str, Any], defaults: dict[str, Any], owned: dict[str, str]) -> dict[str, Any]:
    for key in given:
        if key in owned:
            raise PydanticCustomError("trl_arg", "afmrl sets it from {owner}: leave it out", {"key": key, "owner": owned[key]})
    return {**defaults, **given}


class SFTConfig(Section):
    """SFT warm start of the extractor (``afmrl models sft``): teaches the JSON answer format."""

    target_source: Literal["reference", "provided"] = Field(
        "reference", description="answers from reference_attributes (train split only) or seller-stated ones"
    )
    splits: list[str] = Field(["train"], description="listings to learn from")
    max_listings: int | None = Field(None, ge=1)
    method: Literal["auto", "lora", "full"] = Field("auto", description="auto: full for an afmrl tiny model, else LoRA")
    merge_lora: bool = Field(True, description="save merged weights (a plain model folder)")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    seed: int = Field(0, description="torch and trl's seed")
    trl: dict[str, Any] = Field(default_factory=lambda: dict(SFT_TRL_DEFAULTS), validate_default=True,
                                description="trl.SFTConfig fields by their own names; unset ones: SFT_TRL_DEFAULTS")  # fmt: skip

    @field_validator("trl")
    @classmethod
    def _trl(cls, given: dict[str, Any]) -> dict[str, Any]:
        return _trl_args(given, SFT_TRL_DEFAULTS, SFT_TRL_OWNED)


class RARConfig(Section):
    """Retrieval-Augmented Reinforcement (``afmrl models rar``): GRPO + LoRA on the extractor."""

    target: Literal["self", "product"] = Field("product", description="self: own image; product: same product_id")
    query_modality: Literal["auto", "text", "listing"] = Field(
        "auto", description="auto/listing: a listing's photo fused with its enhanced text (text alone without one)")
    gallery_modality: Literal["image", "text", "listing"] = "listing"
    gallery_splits: list[str] | None = Field(None, description="gallery listings (target=product); null: the "
                                             "catalogue's `gallery` listings where it has them, else rar.splits")  # fmt: skip
    gallery_size: int | None = Field(512, ge=2, description="cap on gallery listings (distractors sampled)")
    gallery_attributes: Literal["provided", "none"] = Field(
        "provided", description="gallery texts: shop-stated attributes (never reference_attributes) or none")
    splits: list[str] = Field(["train"], description="prompt listings")
    max_prompts: int | None = Field(128, ge=1, description="prompt listings sampled (seeded); their products' "
                                    "gallery listings are always in the gallery")  # fmt: skip
    retrieval_weight: float = Field(1.0, ge=0)
    format_weight: float = Field(0.2, ge=0)
    margin_weight: float = Field(0.5, ge=0, description="similarity-margin term that grades equal ranks")
    invalid_reward: float = Field(-1.5, lt=-1, description="retrieval reward of an empty or unparseable answer: "
                                  "below the -1 floor of any parseable one")  # fmt: skip
    patience: int = Field(5, ge=0, description="stop when the mean reward has not improved for this many logged "
                          "steps (0: never)")  # fmt: skip
    min_delta: float = Field(0.01, ge=0, description="smallest reward gain that resets the patience")
    heldout_split: str | None = Field("val", description="reward alignment check (reward vs attribute F1) on "
                                      "this split after training; null: skipped")  # fmt: skip
    heldout_listings: int = Field(32, ge=2, description="held-out listings sampled for the alignment check")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    merge_lora: bool = Field(True, description="also save merged weights next to the adapter")
    seed: int = Field(0, description="gallery distractors, prompt sample, torch and trl's seed")
    trl: dict[str, Any] = Field(default_factory=lambda: dict(RAR_TRL_DEFAULTS), validate_default=True,
                                description="trl.GRPOConfig fields by their own names; unset ones: RAR_TRL_DEFAULTS")  # fmt: skip

    @field_validator("trl")
    @classmethod
    def _trl(cls, given: dict[str, Any]) -> dict[str, Any]:
        args = _trl_args(given, RAR_TRL_DEFAULTS, RAR_TRL_OWNED)
        if "generation_batch_size" in given or "steps_per_generation" in given:
            return args  # trl checks its own generation batch rules
        per, acc, gens = (args.get(k) for k in ("per_device_train_batch_size", "gradient_accumulation_steps",
                                                 "num_generations"))  # fmt: skip
        if all(isinstance(v, int) and v > 0 for v in (per, acc, gens)) and (per * acc) % gens:
            raise PydanticCustomError(
                "trl_arg", "per_device_train_batch_size x gradient_accumulation_steps ({per} x {acc}) must be "
                "divisible by num_generations ({gens}): the per-device batch counts completions",
                {"key": "num_generations", "per": per, "acc": acc, "gens": gens},
            )  # fmt: skip
        return args


class LoopConfig(Section):
    """The AFMRL loop (paper, section 3): round 1 trains the encoder on ``attributes.backend``'s attributes
    and reinforces the extractor with it (RAR); round 2 re-extracts with the reinforced extractor and
    retrains. The candidate is the round with the better primary metric on ``select_split``."""

    rounds: int = Field(2, ge=1, le=2)  # 1: round 2's stages write a "skipped" marker and nothing else
    select_split: str = "val"


class ServeConfig(Section):
    """The search service (``afmrl serve``): where it listens, which encoder it follows, request limits.

    ``encoder`` null: ``models:/<registry.encoder_name>@<registry.champion_alias>``, followed every
    ``follow_interval_s`` seconds (0: never) without a restart; a folder pins one encoder."""

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(8000, ge=0, le=65535, description="0: any free port (printed at start)")
    encoder: str | None = Field(None, description="null: the registry's champion (followed); or a folder / models:/ URI")
    follow_interval_s: float = Field(10.0, ge=0, description="seconds between checks of the champion / alias; 0: off")
    top_k: int = Field(10, ge=1, le=100, description="candidates per query unless the request asks (k <= max_top_k)")
    max_top_k: int = Field(100, ge=1, le=1000)
    max_upload_mb: float = Field(10.0, gt=0, description="largest request body (photo upload) in MiB: 413 above")
    max_query_chars: int = Field(2000, ge=1, description="longest text query")
    consistency_level: Literal["Strong", "Bounded", "Session", "Eventually"] = Field(
        "Eventually", description="Milvus read consistency of searches (the served collection is complete, not written)"
    )
    catalog: str | None = Field(None, description="catalogue folder for listing images; null: the one the index recorded")
    dedup: str | None = Field("outputs/dedup", description="the dedup stage's output (folder or Parquet) for the review "
                              "page; absent or null: the page says so")
    torch_threads: int | None = Field(1, ge=1, description="intra-op threads for query encoding; null: torch's default")
    blas_threads: int | None = Field(1, ge=1, description="numpy's BLAS threads (Milvus Lite's scan); null: all cores")


class DedupConfig(Section):
    """De-duplication (``afmrl dedup``): candidate pairs from index neighbours, a classifier on pair features
    fit on labelled pairs, a threshold calibrated to a target precision, groups and a review queue."""

    target_precision: float = Field(0.95, gt=0, le=1, description="precision the threshold is calibrated to")
    threshold_rule: Literal["precision", "f1"] = Field(
        "precision", description="precision: lowest threshold reaching target_precision; f1: the best F1"
    )
    top_k: int = Field(10, ge=1, le=1000, description="index neighbours per listing that become candidate pairs")
    review_margin: float = Field(0.15, ge=0, le=1, description="review pairs scoring this far below the threshold")
    grouping: Literal["average", "scored_average", "components"] = Field(
        "average", description="average: the mean score over all pairs between two groups (unscored: 0) must reach "
        "the threshold; scored_average: over the scored pairs; components: chains"
    )
    prior_shift: bool = Field(True, description="calibrate at the share of matches estimated (EM) among the pairs "
                                                "being decided, not the labelled pairs' share")
    label_splits: list[str] = Field(["train", "val"], description="splits whose product ids label the pairs")
    max_positives_per_product: int = Field(20, ge=0, description="same-product pairs added per product")
    folds: int = Field(5, ge=2, description="cross-validation folds for the out-of-fold calibration scores")
    max_iter: int = Field(300, ge=1, description="boosting rounds of the pair classifier")
    learning_rate: float = Field(0.05, gt=0, le=1)
    max_tokens: int = Field(48, ge=8, description="MiniLM text truncation for the pretrained text embeddings")
    seed: int = 0
    uri: str | None = Field(None, description="Milvus for the neighbour search; null: Milvus Lite in a temp folder")


class Config(Section):
    """The whole configuration tree (the layout of params.yaml)."""

    data: DataConfig = DataConfig()
    synth: SynthConfig = SynthConfig()
    splits: SplitConfig = SplitConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    tracking: TrackingConfig = TrackingConfig()
    registry: RegistryConfig = RegistryConfig()
    trigger: TriggerConfig = TriggerConfig()
    encoder: EncoderConfig = EncoderConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    index: IndexConfig = IndexConfig()
    attributes: AttributesConfig = AttributesConfig()
    mllm: MLLMConfig = MLLMConfig()
    tiny: TinyConfig = TinyConfig()
    sft: SFTConfig = SFTConfig()
    rar: RARConfig = RARConfig()
    loop: LoopConfig = LoopConfig()
    serve: ServeConfig = ServeConfig()
    dedup: DedupConfig = DedupConfig()

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict; values are parsed as YAML scalars/lists."""
    nested: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} is not of the form key.path=value", field=pair)
        key, raw = pair.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {pair!r} has an empty key", field=key)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot parse value {raw!r}: {exc}", field=key) from exc
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with another override", field=key)
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_errors(exc: ValidationError, source: str) -> ConfigError:
    lines = []
    fields = []
    for err in exc.errors():
        loc = [*err["loc"], *([err["ctx"]["key"]] if err["type"] == "trl_arg" else [])]  # a key of sft.trl / rar.trl
        path = ".".join(str(p).rstrip("_") for p in loc)
        fields.append(path)
        lines.append(f"{path}: {err['msg']}")
    return ConfigError("; ".join(lines), file=source, field=fields[0] if fields else None)


def config_from_text(text: str, overrides: list[str] | None = None, source: str = "<params text>") -> Config:
    """The configuration from params.yaml's text (how Kubeflow components receive it) plus overrides."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=source) from exc
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping", file=source)
    try:
        return Config.model_validate(_merge(data, parse_overrides(overrides)))
    except ValidationError as exc:
        raise _format_errors(exc, source) from None


def load_config(path: str | Path | None = "params.yaml", overrides: list[str] | None = None) -> Config:
    """Load params.yaml (a missing default file means built-in defaults) and apply overrides."""
    data: dict[str, Any] = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        p = Path(path)
        if p.exists():
            try:
                loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise ConfigError(f"not valid YAML: {exc}", file=source) from exc
            if loaded is not None and not isinstance(loaded, dict):
                raise ConfigError("top level must be a mapping", file=source)
            data = loaded or {}
        elif str(path) != "params.yaml":
            raise ConfigError("params file not found", file=source)
    data = _merge(data, parse_overrides(overrides))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise _format_errors(exc, source if not overrides else f"{source} (+ --set overrides)") from None
