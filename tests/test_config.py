from pathlib import Path

import pytest

from wasmlambda.config import Settings, load_settings
from wasmlambda.errors import ConfigError


def test_layers_override_in_order(tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text("[worker]\nport = 9000\ndefault_timeout_ms = 500\nmax_queue = 7\n")
    environ = {"WASMLAMBDA_PORT": "9001", "WASMLAMBDA_DEFAULT_TIMEOUT_MS": "600"}
    settings = load_settings(config, environ, {"port": 9002, "host": None})
    assert settings.port == 9002  # flag beats env beats file
    assert settings.default_timeout_ms == 600  # env beats file
    assert settings.max_queue == 7  # file beats default
    assert settings.host == Settings().host  # a None flag means "not given"


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text("data_dir = '/srv/wl'\n")
    assert load_settings(environ={"WASMLAMBDA_CONFIG": str(config)}).data_dir == Path("/srv/wl")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("prot = 1", "unknown setting 'prot'"),
        ("port = 'x'", "port must be int"),
        ("port = 70000", "port must be 0-65535"),
        ("default_memory_mb = 4", "memory_mb must be between 16"),
        ("default_timeout_ms = 0", "default_timeout_ms must be positive"),
        ("spin_us = 20000", "spin_us must be 0-10000"),
        ("spin_us = -1", "spin_us must be 0-10000"),
        ("port = [", "Invalid"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, document: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(document)
    with pytest.raises(ConfigError, match=message):
        load_settings(config, {})


def test_bad_environment_value() -> None:
    with pytest.raises(ConfigError, match="WASMLAMBDA_PORT: port must be int"):
        load_settings(environ={"WASMLAMBDA_PORT": "eighty"})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.toml", {})
