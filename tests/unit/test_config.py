"""Settings: every key documented, layered overrides, refusal of unsafe production settings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from market.config import DEFAULT_CONFIG, Settings, load_settings
from market.errors import ConfigurationError


def _settings_keys(model: type = Settings, prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            keys |= _settings_keys(annotation, f"{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _documented_keys(path: Path) -> dict[str, bool]:
    """Each key of the TOML file -> whether a comment line stands right above it."""
    found: dict[str, bool] = {}
    section = ""
    previous = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if header := re.fullmatch(r"\[(\w+)\]", stripped):
            section = header.group(1) + "."
        elif match := re.match(r"(\w+)\s*=", stripped):
            found[section + match.group(1)] = previous.startswith("#")
        previous = stripped
    return found


def test_every_setting_is_declared_and_commented_in_default_toml() -> None:
    documented = _documented_keys(DEFAULT_CONFIG)
    assert set(documented) == _settings_keys()
    undocumented = [key for key, has_comment in documented.items() if not has_comment]
    assert undocumented == []


def test_default_toml_values_equal_the_model_defaults() -> None:
    with DEFAULT_CONFIG.open("rb") as handle:
        file_settings = Settings.model_validate(tomllib.load(handle))
    assert file_settings == Settings()


def test_environment_overrides_files_and_local_overrides_default(tmp_path: Path) -> None:
    local = tmp_path / "local.toml"
    local.write_text('[server]\nport = 6001\nhost = "0.0.0.0"\n')
    settings = load_settings(
        local_file=local,
        environ={
            "MARKET_SERVER_PORT": "7002",
            "MARKET_HOME": str(tmp_path / "inst"),
            "MARKET_TEST_POSTGRES_URL": "ignored: names no setting",
        },
    )
    assert settings.server.port == 7002
    assert settings.server.host == "0.0.0.0"
    assert settings.home == (tmp_path / "inst").resolve()
    assert settings.database_url == f"sqlite:///{(tmp_path / 'inst' / 'market.db').resolve()}"


def test_unknown_key_in_a_file_is_refused(tmp_path: Path) -> None:
    local = tmp_path / "local.toml"
    local.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigurationError, match=r"server\.prot"):
        load_settings(local_file=local, environ={})


def test_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigurationError, match=r"server\.port"):
        load_settings(environ={"MARKET_SERVER_PORT": "eighty"})


@pytest.mark.parametrize(
    "secret, message",
    [
        ("", "MARKET_APP_SECRET_KEY"),
        ("change-me", "placeholder"),
        ("short-but-random", "placeholder or short"),
    ],
)
def test_production_refuses_placeholder_secrets(secret: str, message: str) -> None:
    environ = {
        "MARKET_ENV": "production",
        "MARKET_APP_SECRET_KEY": secret,
        "MARKET_SECURITY_SECURE_COOKIES": "true",
    }
    with pytest.raises(ConfigurationError, match=message):
        load_settings(environ=environ)


def test_production_refuses_insecure_cookies() -> None:
    environ = {"MARKET_ENV": "production", "MARKET_APP_SECRET_KEY": "k" * 40}
    with pytest.raises(ConfigurationError, match="secure_cookies"):
        load_settings(environ=environ)


def test_production_with_real_secret_is_accepted() -> None:
    environ = {
        "MARKET_ENV": "production",
        "MARKET_APP_SECRET_KEY": "a7f3" * 10,
        "MARKET_SECURITY_SECURE_COOKIES": "1",
    }
    settings = load_settings(environ=environ)
    assert settings.is_production and settings.secret_key() == "a7f3" * 10


def test_missing_instance_secret_says_to_run_init(tmp_path: Path) -> None:
    settings = load_settings(environ={"MARKET_HOME": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigurationError, match="market init"):
        settings.secret_key()
