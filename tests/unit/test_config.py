"""Settings: every key documented, layered overrides, refusal of unsafe production settings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel

from market.config import DEFAULT_CONFIG, Settings, load_settings
from market.errors import ConfigurationError


def _undeclared(model: type[BaseModel], table: dict[str, Any], where: str) -> list[str]:
    """Fields of ``model`` (recursively, through dicts of models) the TOML does not state."""
    missing = []
    for name, field in model.model_fields.items():
        key = f"{where}{name}"
        if name not in table:
            missing.append(key)
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            missing += _undeclared(annotation, table[name], key + ".")
        elif get_origin(annotation) is dict:
            value_type = get_args(annotation)[1]
            if isinstance(value_type, type) and issubclass(value_type, BaseModel):
                for entry, sub in table[name].items():
                    missing += _undeclared(value_type, sub, f"{key}.{entry}.")
    return missing


def _uncommented_keys(path: Path) -> list[str]:
    """Keys (as table.key) without a comment line right above them."""
    bad = []
    table = ""
    previous = ""
    in_array = False
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if in_array:
            in_array = not stripped.startswith("]")
            continue
        if header := re.fullmatch(r"\[([\w.-]+)\]", stripped):
            table = header.group(1) + "."
        elif match := re.match(r"([\w-]+)\s*=", stripped):
            if not previous.startswith("#"):
                bad.append(table + match.group(1))
            in_array = stripped.endswith("[")
        previous = stripped
    return bad


def test_every_setting_is_declared_and_commented_in_default_toml() -> None:
    with DEFAULT_CONFIG.open("rb") as handle:
        data = tomllib.load(handle)
    Settings.model_validate(data)  # nothing unknown, nothing of the wrong type
    assert _undeclared(Settings, data, "") == []
    assert _uncommented_keys(DEFAULT_CONFIG) == []


def test_default_toml_values_equal_the_model_defaults() -> None:
    """Where the code has a default too, it is the documented one."""
    with DEFAULT_CONFIG.open("rb") as handle:
        data = tomllib.load(handle)
    # Required sections (costing: coefficients with sources) exist only in the file.
    required = {name: data[name] for name, f in Settings.model_fields.items() if f.is_required()}
    assert Settings.model_validate(data) == Settings.model_validate(required)


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


def test_an_idle_sqlite_worker_looks_for_jobs_at_the_configured_pace(tmp_path: Path) -> None:
    """A purchase waits for the worker's next look: at most ``queue.poll_max_delay_s``."""
    from market.jobs import Queue

    shipped = load_settings(environ={"MARKET_HOME": str(tmp_path)}, local_file=tmp_path / "none")
    assert shipped.queue.poll_max_delay_s == 0.25
    settings = load_settings(
        environ={"MARKET_HOME": str(tmp_path), "MARKET_QUEUE_POLL_MAX_DELAY_S": "0.5"},
        local_file=tmp_path / "none",
    )
    consumer = Queue(settings).consumer(workers=1)
    assert consumer.max_delay == 0.5 and consumer.default_delay == 0.1
