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
    from afmrl.training.sft import run_sft

    base = build_tiny("vlm", tmp_path_factory.mktemp("tiny-vlm"), synth_catalog, vocab_size=1024)
    cfg = load_config(None, ["tracking.enabled=false", f"mllm.model={base}", "sft.max_steps=100",
                             "sft.learning_rate=0.005", "sft.batch_size=8"])  # fmt: skip
    result = run_sft(cfg, synth_catalog, tmp_path_factory.mktemp("sft"))
    return base, result


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


def test_grpo_few_steps_change_the_adapter_and_log_to_mlflow(sft_model, synth_catalog, tmp_path):
    import mlflow

    from afmrl.training.rar import run_rar
    from afmrl.training.reward_encoder import BackboneEncoder

    _, sft = sft_model
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(None, [f"tracking.uri={uri}", "rar.max_steps=2", "rar.max_prompts=8", "rar.num_generations=4",
                             "rar.batch_size=4", "rar.max_completion_length=40", "rar.learning_rate=0.002",
                             "rar.beta=0.04", "rar.target=product", "rar.gallery_modality=text"])  # fmt: skip
    result = run_rar(cfg, synth_catalog, tmp_path / "rar", base_model=str(sft.model_dir), encoder=BackboneEncoder())
    assert result.steps == 2 and result.prompts == 8
    assert result.adapter_change > 0.0  # LoRA B started at zero: the adapter moved
    assert (result.adapter_dir / "adapter_config.json").is_file()
    logged = {k for h in result.history for k in h}
    assert {"rewards/retrieval/mean", "rewards/format/mean", "kl", "completions/mean_length",
            "rar/valid_json_rate"} <= logged  # fmt: skip
    summary = json.loads((tmp_path / "rar" / "rar.json").read_text())
    assert summary["seconds_per_step"] > 0

    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("afmrl").experiment_id])
    run = next(r for r in runs if r.data.tags.get("afmrl.stage") == "rar")
    history = client.get_metric_history(run.info.run_id, "rewards/retrieval/mean")
    assert [m.step for m in history] == [1, 2]
    assert client.get_metric_history(run.info.run_id, "rar/valid_json_rate")

    # the merged model is a plain folder the extractor loads
    merged = load_mllm(result.model_dir)
    assert merged.is_vlm and not any("lora" in n for n, _ in merged.model.named_parameters())


def test_sft_with_lora_on_a_text_model(synth_catalog, tmp_path):
    from afmrl.training.sft import run_sft

    base = build_tiny("lm", tmp_path / "lm", synth_catalog, vocab_size=512)
    cfg = load_config(None, ["tracking.enabled=false", "sft.method=lora", "sft.max_steps=3", "sft.batch_size=4",
                             "sft.learning_rate=0.01", "sft.target_modules=[q_proj,v_proj]"])  # fmt: skip
    result = run_sft(cfg, synth_catalog, tmp_path / "sft", base_model=str(base))
    assert result.lora and result.steps == 3
    before = load_file(base / "model.safetensors")
    after = load_file(result.model_dir / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)  # only the adapted, merged layers
