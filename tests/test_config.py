import pytest

from bot.config import Config, ConfigError, load_config, parse_config


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = load_config()
    assert c == Config()
    assert c.hf_endpoint == "https://huggingface.co"
    assert c.github_api == "https://api.github.com"


def test_example_config_is_valid_and_complete():
    """config.example.toml documents every key with its default value."""
    from pathlib import Path

    import dataclasses
    import tomllib

    path = Path(__file__).parent.parent / "config.example.toml"
    example, defaults = load_config(path), Config()
    raw = tomllib.loads(path.read_text())
    for section in dataclasses.fields(Config):
        if section.name == "base_dir":
            continue
        assert getattr(example, section.name) == getattr(defaults, section.name), section.name
        keys = {f.name for f in dataclasses.fields(getattr(defaults, section.name))}
        assert set(raw[section.name]) == keys, f"[{section.name}] keys missing from the example"


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"hub": {"cache_ttl_seconds": "abc"}}, r"\[hub\] cache_ttl_seconds: expected an integer"),
        ({"hub": {"cache_ttl_secs": 5}}, r"\[hub\] cache_ttl_secs: unknown key"),
        ({"hubb": {}}, r"unknown section \[hubb\]"),
        ({"hub": 3}, r"\[hub\] must be a table"),
        ({"memory": {"fit_fraction": 1.5}}, r"\[memory\] fit_fraction"),
        ({"memory": {"context_tokens": -1}}, "must not be negative"),
        ({"discord": {"guild_ids": ["x"]}}, r"guild_ids\[0\]: expected an integer"),
        ({"discord": {"token": "abc"}}, "environment only"),
        ({"suggestions": {"github_api": "ftp://x"}}, "http"),
        ({"logging": {"level": "LOUD"}}, "level"),
        ({"predictions": {"default_confidence": 40}}, r"\[predictions\] default_confidence: expected 50 to 99"),
        ({"predictions": {"page_size": 50}}, r"\[predictions\] page_size"),
        ({"hub": {"max_retries": True}}, "expected an integer"),
    ],
)
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_bad_toml_is_reported(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[hub\nx=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def test_environment_endpoints_and_relative_paths(tmp_path, monkeypatch):
    p = tmp_path / "c.toml"
    p.write_text('[store]\npath = "data/db.sqlite3"\n[suggestions]\ngithub_api = "http://127.0.0.1:1/"\n')
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:2/")
    c = load_config(p)
    assert c.hf_endpoint == "http://127.0.0.1:2"
    assert c.github_api == "http://127.0.0.1:1"
    monkeypatch.setenv("CANRUN_GITHUB_API", "http://127.0.0.1:3")
    assert c.github_api == "http://127.0.0.1:3"
    assert c.path(c.store.path) == tmp_path / "data/db.sqlite3"
    monkeypatch.setenv("CANRUN_CONFIG", str(p))
    assert load_config().store.path == "data/db.sqlite3"
