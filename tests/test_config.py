from __future__ import annotations

import pytest
import yaml

from afmrl.config import Config, load_config, parse_overrides
from afmrl.errors import ConfigError

from .conftest import REPO


def test_shipped_params_yaml_parses_and_has_every_section():
    """The repository's params.yaml is valid and lays out the whole tree (DVC reads it by section); its
    values are the user's to edit, so they are not compared with anything."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    load_config(REPO / "params.yaml")  # typed and strict: unknown keys and bad values raise
    assert set(raw) == set(Config().to_dict())


def test_override_sets_nested_typed_value(default_params):
    cfg = load_config(default_params, ["synth.seed=7", "validate.max_fail_share=0.2", "synth.currencies=[EUR]"])
    assert cfg.synth.seed == 7
    assert cfg.validate_.max_fail_share == pytest.approx(0.2)
    assert cfg.synth.currencies == ["EUR"]


@pytest.mark.parametrize(
    ("override", "path"),
    [("synth.sed=1", "synth.sed"), ("synth.seed=abc", "synth.seed"), ("nope.x=1", "nope"),
     ("validate.max_fail_share=2", "validate.max_fail_share")],  # fmt: skip
)
def test_unknown_or_ill_typed_keys_name_their_dotted_path(override, path, default_params):
    with pytest.raises(ConfigError) as exc:
        load_config(default_params, [override])
    assert exc.value.field == path
    assert path in str(exc.value)


def test_bad_yaml_file_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("synth:\n  seed: [1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert str(bad) in str(exc.value)


def test_override_syntax_errors():
    with pytest.raises(ConfigError):
        parse_overrides(["noequals"])
    with pytest.raises(ConfigError):
        parse_overrides(["a..b=1"])
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}


def test_tests_never_read_the_working_params_yaml(request, _isolated_cwd):
    """Each test starts in its own empty directory (tests/conftest.py), not in the repository: a garbage
    params.yaml there does not reach the fixtures, while the CLI, which reads ./params.yaml, would fail."""
    from pathlib import Path

    from typer.testing import CliRunner

    from afmrl.cli import app

    assert Path.cwd() == _isolated_cwd != REPO and list(_isolated_cwd.iterdir()) == []
    Path("params.yaml").write_text("synth: [this is not\n")
    assert request.getfixturevalue("cfg").to_dict() == load_config(None, ["tracking.enabled=false"]).to_dict()
    result = CliRunner().invoke(app, ["where"])  # the CLI itself does read ./params.yaml ...
    assert result.exit_code != 0 and "params.yaml" in result.output
    # ... which is why no test may run it from the repository root


def test_trl_settings_pass_through_with_our_defaults_under_them():
    """``sft.trl`` / ``rar.trl`` hold trl's own fields; a key the user leaves out keeps afmrl's default."""
    from afmrl.config import RAR_TRL_DEFAULTS, SFT_TRL_DEFAULTS

    cfg = load_config(None, ["rar.trl.learning_rate=0.002", "rar.trl.top_k=20", "sft.trl.max_steps=5"])
    assert cfg.rar.trl == {**RAR_TRL_DEFAULTS, "learning_rate": 0.002, "top_k": 20}
    assert cfg.sft.trl == {**SFT_TRL_DEFAULTS, "max_steps": 5}
    assert load_config(None).rar.trl == RAR_TRL_DEFAULTS


@pytest.mark.parametrize(
    ("override", "path"),
    [("rar.trl.seed=3", "rar.trl.seed"), ("rar.trl.output_dir=x", "rar.trl.output_dir"),
     ("rar.trl.reward_weights=[1,1]", "rar.trl.reward_weights"), ("sft.trl.seed=1", "sft.trl.seed"),
     ("rar.trl.num_generations=3", "rar.trl.num_generations")],  # fmt: skip
)
def test_trl_keys_afmrl_owns_or_that_break_grpo_batching_name_their_path(override, path):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert exc.value.field == path and path in str(exc.value)


def test_mixed_precision_no_survives_a_dvc_rewrite(tmp_path):
    # DVC's `-S` rewrites params.yaml and an unquoted `no` comes back as YAML false
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  mixed_precision: no\n  lr: 0.002\n", encoding="utf-8")
    cfg = load_config(path)
    assert cfg.train.mixed_precision == "no" and cfg.train.lr == 0.002
    with pytest.raises(ConfigError, match="train.mixed_precision"):
        load_config(None, ["train.mixed_precision=yes"])


@pytest.mark.parametrize("key, value", [("floor", "true"), ("floor", "1.5"), ("min_improvement", "-0.1"),
                                        ("max_regression", "true"), ("max_regression", "2")])
def test_gate_settings_are_fractions_named_by_their_key(key, value):
    with pytest.raises(ConfigError, match=rf"registry\.gate\.listing_R@1\.{key}"):
        load_config(None, [f"registry.gate.listing_R@1.{key}={value}"])


def test_guide_spares_without_the_guide_is_a_config_error():
    """AGCL's train.guide_spares lifts the zero-shot guide's masks: without train.agcl_guide it would do nothing."""
    with pytest.raises(ConfigError, match="agcl_guide"):
        load_config(None, ["train.method=agcl", "train.agcl_guide=false", "train.guide_spares=[size]"])
    assert load_config(None, ["train.method=agcl", "train.agcl_guide=true", "train.guide_spares=[size]"])
    assert load_config(None, ["train.method=infonce", "train.guide_spares=[size]"])  # read by AGCL only
