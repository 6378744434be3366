"""Configuration and YAML loading: what the operator typed, or file:line:col errors."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config import Secret, load_config, parse_node_spec
from engine.errors import ConfigError
from engine.yamlfile import loads

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_documents_every_key_and_loads(monkeypatch):
    monkeypatch.setenv("FS1_ESL_PASSWORD", "s3cret")
    monkeypatch.setenv("CALLROUTER_API_TOKEN", "tok")
    config = load_config(ROOT / "config.example.yaml")
    assert [n.name for n in config.freeswitch] == ["fs1"]
    assert config.freeswitch[0].password.reveal() == "s3cret"
    assert config.api.token.reveal() == "tok"
    assert config.acd.file == ROOT / "acd.yaml" and config.acd.file.exists()
    assert config.data_dir == ROOT / "var"


@pytest.mark.parametrize("text, expected", [
    ("a: on", "on"), ("a: off", "off"), ("a: yes", "yes"), ("a: no", "no"),
    ("a: 9:30", "9:30"), ("a: 010", "010"), ("a: 0x1F", "0x1F"), ("a: 1_0", "1_0"),
    ("a: 12", 12), ("a: 1.5", 1.5), ("a: true", True), ("a: ~", None), ("a: '010'", "010"),
    ("a: 2024-01-01", "2024-01-01"), ("a: +442079460000", "+442079460000"), ("a: 1.50", "1.50"),
    ("a: 1e3", "1e3"), ("a: -7", -7), ("a: 2.0", 2.0), ("a: .5", ".5"),
])
def test_yaml_scalars_mean_the_text_typed(text, expected):
    assert loads(text)["a"] == expected


@given(st.text(alphabet="0123456789+-._e:", min_size=1, max_size=12))
def test_a_plain_number_always_gives_back_the_text_typed(text):
    try:
        value = loads(f"a: {text}")["a"]
    except ConfigError:
        return  # not a scalar YAML accepts here (e.g. a lone '-' starts a list)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert str(value) == text


def test_yaml_keys_stay_text():
    assert list(loads("on: 1\n1: 2\n")) == ["on", "1"]


@pytest.mark.parametrize("text, message", [
    ("a: 1\nb: 2\na: 3\n", "t.yaml:3:1: duplicate key 'a' (first defined at line 1)"),
    ("a: [1, 2\n", "t.yaml:2:1: not valid YAML"),
    ("? [a]\n: 1\n", "t.yaml:1:3: a key must be a plain word"),
    ("base: &b {x: 1}\nother:\n  <<: *b\n", "t.yaml:3:3: merge keys (<<) are not supported"),
])
def test_yaml_mistakes_point_at_file_line_col(text, message):
    with pytest.raises(ConfigError) as err:
        loads(text, "t.yaml")
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("body, message", [
    ("freeswitch:\n  - host: h\n    pasword: x\n", "c.yaml:3:5: unknown key 'pasword' in freeswitch[0]; did you mean 'password'?"),
    ("freeswitch:\n  - host: h\n", "c.yaml:2:5: freeswitch[0] needs 'password'"),
    ("freeswitch:\n  - {host: h, password: p, port: 70000}\n", "c.yaml:2:34: freeswitch[0].port must be between 1 and 65535"),
    ("esl:\n  command_timeout: soon\n", "c.yaml:2:20: esl.command_timeout must be a number, got 'soon'"),
    ("esl:\n  command_timeout: 0\n", "c.yaml:2:20: esl.command_timeout must be greater than 0"),
    ("api:\n  listen: localhost\n", "c.yaml:2:11: api.listen must be HOST:PORT"),
    ("api:\n  token: env:NOT A NAME\n", "c.yaml:2:10: api.token: 'NOT A NAME' is not an environment variable name"),
    ("logging: {level: LOUD}\n", "c.yaml:1:18: logging.level must be one of"),
    ("acd:\n  ring_seconds: 0\n", "c.yaml:2:17: acd.ring_seconds must be greater than 0"),
    ("acd:\n  queues: [sales]\n", "c.yaml:2:3: unknown key 'queues' in acd"),
    ("freeswitch:\n  - {name: a, host: h, password: p}\n  - {name: a, host: h, password: p}\n",
     "c.yaml:3:12: two FreeSWITCH nodes are named 'a'"),
    ("sessions: 3\n", "c.yaml:1:1: unknown key 'sessions' in the configuration"),
])
def test_config_mistakes_are_reported_with_their_place(tmp_path, body, message):
    path = tmp_path / "c.yaml"
    path.write_text(body)
    os.environ.pop("NOPE_NOT_SET", None)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path.parent}/{message}")


def test_node_spec_keeps_colons_in_password_and_masks_it_in_errors():
    node = parse_node_spec("10.0.0.5:8021:pa:ss", 0)
    assert (node.host, node.port, node.password.reveal()) == ("10.0.0.5", 8021, "pa:ss")
    with pytest.raises(ConfigError) as err:
        parse_node_spec("10.0.0.5:port:secretpw", 0)
    assert "secretpw" not in str(err.value)


def test_env_secret_is_read_when_used_and_names_its_place_if_missing(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("freeswitch:\n  - {host: h, password: env:NOPE_NOT_SET}\n")
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    config = load_config(path)  # `callrouter status` needs no ESL password
    with pytest.raises(ConfigError) as err:
        config.check_secrets()
    assert str(err.value) == f"{path}:2:25: the environment variable NOPE_NOT_SET is not set"
    monkeypatch.setenv("NOPE_NOT_SET", "x")
    config.check_secrets()
    assert config.freeswitch[0].password.reveal() == "x"


def test_secret_never_formats_itself():
    secret = Secret("hunter2")
    assert "hunter2" not in f"{secret} {secret!r} %s" % secret
    assert secret.reveal() == "hunter2"
