from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from afmrl.config import load_config
from afmrl.models.mllm import load_mllm
from afmrl.models.tiny import build_tiny

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sft_model(synth_catalog, tmp_path_factory):
    """A tiny Qwen2-VL warm-started on the train split's reference attributes (full weights)."""
    from afmrl.stages import sft

    base = build_tiny("vlm", tmp_path_factory.mktemp("tiny-vlm"), synth_catalog, vocab_size=1024)
    cfg = load_config(None, ["tracking.enabled=false", f"mllm.model={base}", "sft.trl.max_steps=100",
                             "sft.trl.learning_rate=0.005", "sft.trl.per_device_train_batch_size=8"])  # fmt: skip
    result = sft.run(cfg, synth_catalog, base, tmp_path_factory.mktemp("sft"))
    return base, result


@pytest.mark.slow
def test_sft_teaches_the_json_format(sft_model, synth_catalog, tmp_path):
    from afmrl.stages import extract

    base, result = sft_model
    assert not result.lora and result.steps == 100
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert losses[-1] < 0.3 * losses[0]
    before = load_file(base / "model.safetensors")
    after = load_file(result.model_dir / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)  # full weights trained
    # greedy extraction on listings it never saw (val + test): valid JSON with the prompt's keys
    cfg = load_config(None, ["tracking.enabled=false", "attributes.backend=mllm", f"mllm.model={result.model_dir}",
                             "attributes.splits=[val,test]", f"attributes.cache_path={tmp_path / 'c.sqlite'}",
                             "mllm.max_new_tokens=48"])  # fmt: skip
    r = extract.run(cfg, synth_catalog, tmp_path / "out")
    assert r.valid_rate >= 0.8
    assert r.metrics["extracted"]["per_key"]["category"]["support"] > 0


@pytest.mark.slow
def test_grpo_few_steps_change_the_adapter_and_log_to_mlflow(sft_model, synth_catalog, tmp_path):
    import mlflow

    from afmrl.config import EncoderConfig
    from afmrl.models.encoders.dual import DualEncoder
    from afmrl.stages import rar

    _, sft = sft_model
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(None, [f"tracking.uri={uri}", "rar.trl.max_steps=2", "rar.max_prompts=16",
                             "rar.trl.num_generations=2", "rar.trl.per_device_train_batch_size=16",
                             "rar.trl.max_completion_length=40", "rar.trl.learning_rate=0.002", "rar.trl.beta=0.04",
                             "rar.target=product", "rar.heldout_listings=4", "rar.patience=0"])  # fmt: skip
    encoder = DualEncoder(EncoderConfig()).eval()  # the AGCL encoder's kind (photo + text fused on the query side)
    result = rar.run(cfg, synth_catalog, sft.model_dir, encoder, tmp_path / "rar")
    assert result.steps == 2 and result.prompts == 16 and result.prompts_per_step == 8
    assert result.adapter_change > 0.0  # LoRA B started at zero: the adapter moved
    assert (result.adapter_dir / "adapter_config.json").is_file()
    logged = {k for h in result.history for k in h}
    assert {"rewards/retrieval/mean", "rewards/format/mean", "kl", "completions/mean_length",
            "rar/valid_json_rate", "rar/reward_group_std", "rar/adapter_max_abs_delta",
            "rar/adapter_mean_abs_delta"} <= logged  # fmt: skip
    deltas = [h["rar/adapter_max_abs_delta"] for h in result.history if "rar/adapter_max_abs_delta" in h]
    assert deltas[-1] > 0.0 and deltas[-1] == pytest.approx(result.adapter_change, rel=1e-4)
    summary = json.loads((tmp_path / "rar" / "rar.json").read_text())
    assert summary["seconds_per_step"] > 0 and summary["photo_queries"] == 16
    align = summary["alignment"]  # reward vs attribute F1 on held-out (val) listings
    assert align["split"] == "val" and align["answers"] >= 4 and 0.0 <= align["mean_f1"] <= 1.0
    assert {"spearman", "pearson", "retrieval_only"} <= set(align)

    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("afmrl").experiment_id])
    run = next(r for r in runs if r.data.tags.get("afmrl.stage") == "rar")
    history = client.get_metric_history(run.info.run_id, "rewards/retrieval/mean")
    assert [m.step for m in history] == [1, 2]
    assert client.get_metric_history(run.info.run_id, "rar/valid_json_rate")

    # the merged model is a plain folder the extractor loads
    merged = load_mllm(result.model_dir)
    assert merged.is_vlm and not any("lora" in n for n, _ in merged.model.named_parameters())


@pytest.mark.slow
def test_sft_with_lora_on_a_text_model(synth_catalog, tmp_path):
    from afmrl.stages import sft

    base = build_tiny("lm", tmp_path / "lm", synth_catalog, vocab_size=512)
    cfg = load_config(None, ["tracking.enabled=false", "sft.method=lora", "sft.trl.max_steps=3",
                             "sft.trl.per_device_train_batch_size=4", "sft.trl.learning_rate=0.01",
                             "sft.target_modules=[q_proj,v_proj]"])  # fmt: skip
    result = sft.run(cfg, synth_catalog, base, tmp_path / "sft")
    assert result.lora and result.steps == 3
    before = load_file(base / "model.safetensors")
    after = load_file(result.model_dir / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)  # only the adapted, merged layers


def test_trl_sections_build_trls_own_configs_and_name_unknown_keys(tmp_path):
    import dataclasses

    from trl import GRPOConfig, SFTConfig

    from afmrl.config import RAR_TRL_DEFAULTS, SFT_TRL_DEFAULTS
    from afmrl.errors import ConfigError
    from afmrl.training.rar import grpo_config
    from afmrl.training.sft import sft_config

    assert set(RAR_TRL_DEFAULTS) <= {f.name for f in dataclasses.fields(GRPOConfig)}
    assert set(SFT_TRL_DEFAULTS) <= {f.name for f in dataclasses.fields(SFTConfig)}
    cfg = load_config(None, ["rar.trl.max_steps=3", "rar.trl.epsilon=0.3", "rar.seed=5", "rar.format_weight=0.5"])
    args = grpo_config(cfg, tmp_path)
    assert (args.max_steps, args.epsilon, args.seed, args.reward_weights) == (3, 0.3, 5, [1.0, 0.5])
    assert args.loss_type == "dapo" and args.output_dir == str(tmp_path / "_trainer")  # our default, our folder
    assert sft_config(load_config(None, ["sft.trl.warmup_steps=2"]), tmp_path).warmup_steps == 2
    for override, build in (("rar.trl.lerning_rate=0.1", grpo_config), ("sft.trl.num_epochs=2", sft_config)):
        with pytest.raises(ConfigError) as exc:
            build(load_config(None, [override]), tmp_path)
        key = override.split("=")[0]
        assert exc.value.field == key and key in str(exc.value)
