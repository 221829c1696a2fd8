from __future__ import annotations

import pytest

from afmrl.config import load_config, parse_overrides
from afmrl.errors import ConfigError

from .conftest import REPO


def test_params_yaml_is_the_default_tree():
    from_file = load_config(REPO / "params.yaml")
    assert from_file.to_dict() == load_config(None).to_dict()


def test_override_sets_nested_typed_value():
    cfg = load_config(REPO / "params.yaml", ["synth.seed=7", "validate.max_fail_share=0.2", "synth.currencies=[EUR]"])
    assert cfg.synth.seed == 7
    assert cfg.validate_.max_fail_share == pytest.approx(0.2)
    assert cfg.synth.currencies == ["EUR"]


@pytest.mark.parametrize(
    ("override", "path"),
    [("synth.sed=1", "synth.sed"), ("synth.seed=abc", "synth.seed"), ("nope.x=1", "nope"),
     ("validate.max_fail_share=2", "validate.max_fail_share")],  # fmt: skip
)
def test_unknown_or_ill_typed_keys_name_their_dotted_path(override, path):
    with pytest.raises(ConfigError) as exc:
        load_config(REPO / "params.yaml", [override])
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
