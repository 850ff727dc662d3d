"""Settings: environment over YAML file, validation errors as one line that names the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from telltale.config.settings import SettingsError, load_settings


def test_defaults_need_no_external_service(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.database_url is None and s.redis_url is None
    assert s.cache_ttl_seconds == 10 and s.health_deadline_seconds == 2
    assert s.disk_degraded_ratio == 0.8 and s.disk_unhealthy_ratio == 0.9
    assert s.queue_depth_degraded == 1000


def test_environment_wins_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "telltale.yml"
    cfg.write_text("port: 9000\nenvironment: staging\ndisk_paths: ['/', '/tmp']\n")
    monkeypatch.setenv("TELLTALE_CONFIG", str(cfg))
    monkeypatch.setenv("TELLTALE_PORT", "9100")
    s = load_settings()
    assert s.port == 9100
    assert s.environment == "staging"
    assert s.disk_paths == ["/", "/tmp"]


def test_comma_separated_disk_paths_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELLTALE_DISK_PATHS", "/, /tmp")
    assert load_settings().disk_paths == ["/", "/tmp"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TELLTALE_DATABASE_URL": "mysql://x/y"}, "TELLTALE_DATABASE_URL: URL scheme should be"),
        ({"TELLTALE_REDIS_URL": "not a url"}, "TELLTALE_REDIS_URL:"),
        ({"TELLTALE_CHECK_TIMEOUT_SECONDS": "-1"}, "TELLTALE_CHECK_TIMEOUT_SECONDS: Input should be greater than 0"),
        ({"TELLTALE_PORT": "70000"}, "TELLTALE_PORT:"),
        ({"TELLTALE_QUEUES": '[{"name": "default"}]'}, "need redis_url"),
        ({"TELLTALE_QUEUES": "[{"}, "TELLTALE_QUEUES: not valid JSON"),
        ({"TELLTALE_DISK_PATHS": "relative/path"}, "TELLTALE_DISK_PATHS: 'relative/path' is not an absolute path"),
    ],
)
def test_invalid_settings_give_one_line(monkeypatch: pytest.MonkeyPatch, env: dict, expected: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yml"
    cfg.write_text("port: 8000\ndatabse_url: postgresql://x/y\n")
    with pytest.raises(SettingsError, match="TELLTALE_DATABSE_URL: unknown setting"):
        load_settings(config_file=str(cfg))


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yml"
    cfg.write_text("port: 8000\n  oops: [\n")
    with pytest.raises(SettingsError, match="not valid YAML at line"):
        load_settings(config_file=str(cfg))


def test_error_never_echoes_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELLTALE_DATABASE_URL", "postgresql://app:hunter2@db:notaport/x")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "hunter2" not in str(err.value)


def test_redacted_hides_tokens_and_dsn_passwords() -> None:
    s = load_settings(
        database_url="postgresql://app:hunter2@db/x",
        redis_url="redis://:r3dispw@cache:6379/0",
        health_token="tok-123456",
    )
    text = repr(s.redacted())
    for secret in ("hunter2", "r3dispw", "tok-123456"):
        assert secret not in text
    assert "postgresql://app:***@db/x" in text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"http_dependencies": [{"name": "redis", "url": "http://x"}]}, "is a built-in check's name"),
        ({"tls_ca_file": "/nonexistent/ca.pem"}, "tls_ca_file '/nonexistent/ca.pem' does not exist"),
        ({"websocket_url": "http://reverb:8080/app"}, "websocket_url must be a ws:// or wss:// URL"),
    ],
)
def test_incoherent_settings_are_refused(values: dict, expected: str) -> None:
    with pytest.raises(SettingsError, match=expected):
        load_settings(**values)
