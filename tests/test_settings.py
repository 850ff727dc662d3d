"""Settings: environment over YAML file, validation errors as one line that names the setting."""

from __future__ import annotations

import re
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
    monkeypatch.setenv("TELLTALE_TRACE_EXCLUDE_PATHS", "[]")
    assert load_settings().trace_exclude_paths == []


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
        ({"TELLTALE_DISK_PATHS": ""}, "TELLTALE_DISK_PATHS: is empty"),
        ({"TELLTALE_DISK_PATHS": " , "}, "TELLTALE_DISK_PATHS: is empty"),
        ({"TELLTALE_HEALTH_TOKEN": ""}, "TELLTALE_HEALTH_TOKEN: is empty"),
        ({"TELLTALE_METRICS_TOKEN": "   "}, "TELLTALE_METRICS_TOKEN: is empty"),
        ({"TELLTALE_INGEST_TOKEN": "a,,b"}, "TELLTALE_INGEST_TOKEN: holds an empty token"),
        ({"TELLTALE_ALERT_WEBHOOK_TOKEN": "new,"}, "TELLTALE_ALERT_WEBHOOK_TOKEN: holds an empty token"),
        ({"TELLTALE_DATABASE_URL": ""}, "TELLTALE_DATABASE_URL: is empty"),
        ({"TELLTALE_HOST": ""}, "TELLTALE_HOST: is empty"),
        ({"TELLTALE_TERRAFORM_BINARY": " "}, "TELLTALE_TERRAFORM_BINARY: is empty"),
        ({"TELLTALE_DOCKER_SOCKET": ""}, "TELLTALE_DOCKER_SOCKET: is empty"),
        ({"TELLTALE_SCHEDULER_HEARTBEAT_KEY": ""}, "TELLTALE_SCHEDULER_HEARTBEAT_KEY: is empty"),
        ({"TELLTALE_TLS_CA_FILE": ""}, "TELLTALE_TLS_CA_FILE: is empty"),
        ({"TELLTALE_METRICS_EXCLUDE_PATHS": ""}, "TELLTALE_METRICS_EXCLUDE_PATHS: is empty"),
        ({"TELLTALE_REDIS_URL": " "}, "TELLTALE_REDIS_URL: is empty"),
        ({"TELLTALE_ALERTMANAGER_URL": ""}, "TELLTALE_ALERTMANAGER_URL: is empty"),
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
    cfg.write_text("port: 8000\nDatabse_URL: postgresql://x/y\n")
    with pytest.raises(SettingsError) as err:
        load_settings(config_file=str(cfg))
    assert str(err.value) == f"{cfg}: Databse_URL: unknown setting (did you mean database_url?)"
    cfg.write_text("TELLTALE_PORT: 8000\nfoo: 1\n")
    with pytest.raises(SettingsError) as err:
        load_settings(config_file=str(cfg))
    assert str(err.value) == f"{cfg}: TELLTALE_PORT: unknown setting (did you mean port?)"


def test_a_bad_value_in_the_file_names_the_file_key(tmp_path: Path) -> None:
    cfg = tmp_path / "settings.yml"
    cfg.write_text("queues:\n  - name: default\n    backend: nosuch\n")
    with pytest.raises(SettingsError, match=r"settings.yml: queues\[0\]\.backend: Input should be"):
        load_settings(config_file=str(cfg))


@pytest.mark.parametrize("content", [b"port: 8000\nenvironment: caf\xe9\n", b"\xff\xfeh\x00e\x00", b"\x80"])
def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path, content: bytes) -> None:
    cfg = tmp_path / "latin1.yml"
    cfg.write_bytes(content)
    with pytest.raises(SettingsError) as err:
        load_settings(config_file=str(cfg))
    assert str(err.value).startswith(f"TELLTALE_CONFIG: {cfg} is not UTF-8 text")


def test_the_exporter_formats_errors_as_the_service_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from telltale.config.exporter import load_exporter_settings

    monkeypatch.setenv("TELLTALE_EXPORTER_PORT", "0")
    monkeypatch.setenv("TELLTALE_EXPORTER_POOL_MAX_SIZE", "99")
    with pytest.raises(SettingsError) as exp:
        load_exporter_settings()
    monkeypatch.setenv("TELLTALE_PORT", "0")
    with pytest.raises(SettingsError) as svc:
        load_settings()
    assert str(exp.value) == "TELLTALE_EXPORTER_PORT: Input should be greater than 0 (and 1 more)"
    assert str(svc.value) == "TELLTALE_PORT: Input should be greater than 0"
    monkeypatch.setenv("TELLTALE_EXPORTER_PORT", "9465")
    monkeypatch.setenv("TELLTALE_EXPORTER_POOL_MAX_SIZE", "4")
    monkeypatch.setenv("TELLTALE_EXPORTER_HOST", " ")
    with pytest.raises(SettingsError, match=r"^TELLTALE_EXPORTER_HOST: is empty"):
        load_exporter_settings()


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


def test_tokens_take_several_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELLTALE_HEALTH_TOKEN", "old-token, new-token")
    cfg = tmp_path / "settings.yml"
    cfg.write_text("ingest_token: [ingest-a, ingest-b]\nmetrics_token: single\n")
    s = load_settings(config_file=str(cfg))
    assert [t.get_secret_value() for t in s.health_token or ()] == ["old-token", "new-token"]
    assert [t.get_secret_value() for t in s.ingest_token or ()] == ["ingest-a", "ingest-b"]
    assert [t.get_secret_value() for t in s.metrics_token or ()] == ["single"]
    assert s.alert_webhook_token is None
    assert set(s.secrets()) >= {"old-token", "new-token", "ingest-a", "ingest-b", "single"}
    assert s.redacted()["health_token"] == ["***", "***"]


@pytest.mark.parametrize("content", ["health_token: 12345\n", "health_token: [abc, 123]\n", "health_token: {a: b}\n"])
def test_a_token_that_is_not_text_is_refused(tmp_path: Path, content: str) -> None:
    cfg = tmp_path / "settings.yml"
    cfg.write_text(content)
    with pytest.raises(SettingsError, match=r"settings.yml: health_token: .*(must be a string|quote a numeric token)"):
        load_settings(config_file=str(cfg))


@pytest.mark.parametrize("content", ["", "\n", "  \n", "health_token: ''\n", "health_token:\n", "health_token: []\n"])
def test_an_empty_secret_in_the_file_is_refused(tmp_path: Path, content: str) -> None:
    cfg = tmp_path / "settings.yml"
    cfg.write_text(content or "environment: x\n")
    if not content.startswith("health_token"):
        secret = tmp_path / "token"
        secret.write_text(content)
        cfg.write_text(f"health_token_file: {secret}\n")
    with pytest.raises(SettingsError) as err:
        load_settings(config_file=str(cfg))
    assert f"{cfg}: health_token" in str(err.value) and "empty" in str(err.value)


def test_secrets_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`<NAME>_FILE` for every secret setting (Docker and Kubernetes secrets); the trailing newline goes."""
    (tmp_path / "health").write_text("health-secret\n")
    (tmp_path / "metrics").write_text("metrics-old\nmetrics-new\n")
    (tmp_path / "db").write_text("postgresql://app:pg-pass@db:5432/platform\r\n")
    (tmp_path / "redis").write_text("redis://:r-pass@cache:6379/0")
    monkeypatch.setenv("TELLTALE_HEALTH_TOKEN_FILE", str(tmp_path / "health"))
    monkeypatch.setenv("TELLTALE_METRICS_TOKEN_FILE", str(tmp_path / "metrics"))
    monkeypatch.setenv("TELLTALE_DATABASE_URL_FILE", str(tmp_path / "db"))
    monkeypatch.setenv("TELLTALE_REDIS_URL_FILE", str(tmp_path / "redis"))
    s = load_settings()
    assert [t.get_secret_value() for t in s.health_token or ()] == ["health-secret"]
    assert [t.get_secret_value() for t in s.metrics_token or ()] == ["metrics-old", "metrics-new"]
    assert str(s.database_url) == "postgresql://app:pg-pass@db:5432/platform"
    assert s.redis_url is not None and s.redis_url.password == "r-pass"
    assert {"health-secret", "pg-pass", "r-pass"} <= set(s.secrets())


def test_a_secret_file_in_the_settings_file(tmp_path: Path) -> None:
    (tmp_path / "ingest").write_text("from-a-file\n")
    cfg = tmp_path / "settings.yml"
    cfg.write_text(f"ingest_token_file: {tmp_path / 'ingest'}\n")
    s = load_settings(config_file=str(cfg))
    assert [t.get_secret_value() for t in s.ingest_token or ()] == ["from-a-file"]
    cfg.write_text("ingest_token_file: ingest\n")  # relative to the settings file
    s = load_settings(config_file=str(cfg))
    assert [t.get_secret_value() for t in s.ingest_token or ()] == ["from-a-file"]
    cfg.write_text("ingest_token: x\ningest_token_file: ingest\n")
    with pytest.raises(SettingsError, match="ingest_token and ingest_token_file are both set"):
        load_settings(config_file=str(cfg))


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", "TELLTALE_HEALTH_TOKEN_FILE: cannot read {d}/missing: No such file or directory"),
        ("empty", "TELLTALE_HEALTH_TOKEN_FILE: {d}/empty is empty"),
        ("blank", "TELLTALE_HEALTH_TOKEN_FILE: {d}/blank is empty"),
        ("dir", "TELLTALE_HEALTH_TOKEN_FILE: cannot read {d}/dir: Is a directory"),
        ("latin1", "TELLTALE_HEALTH_TOKEN_FILE: {d}/latin1 is not UTF-8 text"),
        ("both", "TELLTALE_HEALTH_TOKEN and TELLTALE_HEALTH_TOKEN_FILE are both set; keep one"),
        ("", "TELLTALE_HEALTH_TOKEN_FILE: is empty; give the path of a file holding the secret"),
    ],
)
def test_bad_secret_files_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str, expected: str
) -> None:
    (tmp_path / "empty").write_text("")
    (tmp_path / "blank").write_text(" \n\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "latin1").write_bytes(b"caf\xe9")
    (tmp_path / "both").write_text("x")
    if setup == "both":
        monkeypatch.setenv("TELLTALE_HEALTH_TOKEN", "y")
    monkeypatch.setenv("TELLTALE_HEALTH_TOKEN_FILE", str(tmp_path / setup) if setup else "")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value) == expected.format(d=tmp_path)


def test_a_bad_dsn_from_a_file_names_the_file_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "db").write_text("mysql://app:hunter2@db/x\n")
    monkeypatch.setenv("TELLTALE_DATABASE_URL_FILE", str(tmp_path / "db"))
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).startswith("TELLTALE_DATABASE_URL_FILE: URL scheme should be")
    assert "hunter2" not in str(err.value)


def test_every_secret_setting_is_covered() -> None:
    """A new credential-bearing setting must join SECRET_SETTINGS (never empty, `_FILE`, redacted)."""
    from telltale.config.settings import SECRET_SETTINGS, Settings

    looks_secret = {n for n in Settings.model_fields if re.search(r"token|secret|password|_url$", n)}
    assert looks_secret - {"websocket_url"} <= set(SECRET_SETTINGS)


def test_every_text_setting_refuses_blank() -> None:
    """A new plain-text setting must join TEXT_SETTINGS: `TELLTALE_X=` is an error, not a silent default."""
    from telltale.config.settings import TEXT_SETTINGS, Settings

    text = {n for n, f in Settings.model_fields.items() if f.annotation in (str, str | None)}
    assert text == set(TEXT_SETTINGS)
