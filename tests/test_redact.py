"""Redaction: query-string credentials by parameter name, the userinfo of every URL, configured secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from telltale.config.redact import redact, redact_tree, redact_url

SECRET_PARAMS = [
    "access_token",
    "client_secret",
    "api_token",
    "auth_token",
    "key",
    "apikey",
    "api_key",
    "api-key",
    "sig",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "password",
    "passwd",
    "pwd",
    "Token",
    "SECRET",
    "refresh_token",
    "private_key",
    "auth",
    "authorization",
    "signature",
    "x-goog-signature",
    "session_key",
]


@pytest.mark.parametrize("name", SECRET_PARAMS)
def test_query_string_credentials_by_name(name: str) -> None:
    url = f"https://api.example.com/v1/status?region=eu&{name}=v4lu3-XYZ&page=2"
    out = redact(url)
    assert "v4lu3-XYZ" not in out
    assert out == f"https://api.example.com/v1/status?region=eu&{name}=***&page=2"
    assert redact_url(url) == out


@pytest.mark.parametrize("name", ["region", "page", "format", "q", "limit", "cursor", "verbose", "user"])
def test_ordinary_parameters_stay(name: str) -> None:
    """Any name holding one of the words is hidden (`monkey=` too: hiding too much is the safe side)."""
    url = f"https://api.example.com/x?{name}=visible"
    assert redact(url) == url


def test_parameter_names_in_free_text_and_messages() -> None:
    text = "GET https://h/x?token=abc&x=1 failed: 401 (retry with apikey=zzz9)"
    out = redact(text)
    assert "abc" not in out and "zzz9" not in out
    assert out == "GET https://h/x?token=***&x=1 failed: 401 (retry with apikey=***)"


def test_value_ends_at_the_usual_delimiters() -> None:
    for tail in ("&a=1", "#frag", " next", '"', "'", ">", ")", ",", ";"):
        out = redact(f"u?access_token=s3cr3t{tail}")
        assert out == f"u?access_token=***{tail}", tail


def test_percent_encoded_and_empty_values() -> None:
    assert redact("u?client_secret=a%2Fb%3D%3D&x=1") == "u?client_secret=***&x=1"
    assert redact("u?token=&x=1") == "u?token=&x=1"  # nothing to hide


def test_userinfo_of_every_url() -> None:
    assert redact("postgresql://app:topsecret@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact("https://ghp_abcdef123456@github.com/o/r.git") == "https://***@github.com/o/r.git"
    assert redact("redis://:pw0rd@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact("wss://user:p%40ss@ws.example.com/feed?token=t0k") == "wss://user:***@ws.example.com/feed?token=***"
    # an @ in the path or query is not userinfo
    assert redact("https://example.com/users/@me?x=1") == "https://example.com/users/@me?x=1"
    assert redact("mailto:someone@example.com") == "mailto:someone@example.com"


def test_configured_secrets_and_bearer() -> None:
    assert redact("token is hunter22 here", ["hunter22"]) == "token is *** here"
    assert redact("Authorization: Bearer abc.def-ghi") == "Authorization: Bearer ***"
    assert redact("x", ["", "  "]) == "x"  # empty or blank secrets never match


def test_redact_url_structured() -> None:
    url = "https://bob:pw@api.example.com:8443/p/a?x=1&Api_Key=k3y#top"
    assert redact_url(url) == "https://bob:***@api.example.com:8443/p/a?x=1&Api_Key=***#top"
    assert redact_url("not a url") == "not a url"


def test_redact_tree_by_field_name_and_value() -> None:
    tree = {
        "url": "https://h/x?sig=abc",
        "password": "plain",
        "nested": [{"client_secret": "cs-1", "name": "keep"}, "postgres://u:pw123@h/db"],
        "count": 3,
        "token_file": None,
        "headers": {"Authorization": "Basic Zm9vOmJhcg=="},
    }
    out = redact_tree(tree, ["cs-1"])
    text = json.dumps(out)
    for secret in ("abc", "plain", "cs-1", "pw123", "Zm9vOmJhcg"):
        assert secret not in text, secret
    assert out["count"] == 3 and out["nested"][0]["name"] == "keep" and out["token_file"] is None
    assert out["password"] == "***"


def test_plain_text_stays_cheap() -> None:
    """Redaction runs on every log field and every request's path: text without any trigger costs a few
    substring scans (about 0.3 µs on an idle core; the bound leaves room for a loaded test machine)."""
    secrets = ["hunter22", "tok-abcdef"]
    for text in ("/items/7", "Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)"):
        n = 20000
        start = time.perf_counter()
        for _ in range(n):
            redact(text, secrets)
        per_call = (time.perf_counter() - start) / n
        assert per_call < 1e-5, f"{per_call * 1e6:.2f} µs per call for {text!r}"


def test_redact_tree_is_ready_to_serialize() -> None:
    """Objects json.dumps would print with `default=str` are redacted as text first; NaN is not JSON."""

    class Url:
        def __str__(self) -> str:
            return "https://h/?access_token=obj-tok"

    out = redact_tree({"u": Url(), "r": float("inf"), (1, 2): "t", "keep": 1.5})
    expected = {"u": "https://h/?access_token=***", "r": "inf", "(1, 2)": "t", "keep": 1.5}
    assert json.loads(json.dumps(out, allow_nan=False)) == expected


def test_settings_tree_keeps_key_names_when_asked() -> None:
    """`telltale config` shows Redis key names (`scheduler_heartbeat_key`) while hiding credentials by value."""
    tree = {"scheduler_heartbeat_key": "telltale:hb", "url": "https://h/?apikey=k-1"}
    assert redact_tree(tree, names=False) == {"scheduler_heartbeat_key": "telltale:hb", "url": "https://h/?apikey=***"}


def test_percent_encoded_separator() -> None:
    """A raw request line or URL keeps `=` encoded: `/a/password%3Dabc`."""
    assert redact("GET /a/password%3Dabc HTTP/1.1") == "GET /a/password%3D*** HTTP/1.1"
    assert redact("/x?q=a%3Db") == "/x?q=a%3Db"


def _telltale(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TELLTALE_")}
    return subprocess.run(
        [sys.executable, "-m", "telltale.app.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_telltale_config_hides_query_string_credentials() -> None:
    deps = [
        {"name": "payments", "url": "https://api.example.com/status?api_key=cfg-key-1&region=eu"},
        {"name": "storage", "url": "https://tok-cfg-2@storage.example.com/health?X-Amz-Signature=cfg-sig-3"},
    ]
    r = _telltale(
        "config",
        env={
            "TELLTALE_HTTP_DEPENDENCIES": json.dumps(deps),
            "TELLTALE_WEBSOCKET_URL": "wss://ws.example.com/feed?token=cfg-ws-4",
            "TELLTALE_ALERTMANAGER_URL": "http://am:cfg-am-5@alertmanager:9093/",
        },
    )
    assert r.returncode == 0, r.stderr
    for secret in ("cfg-key-1", "tok-cfg-2", "cfg-sig-3", "cfg-ws-4", "cfg-am-5"):
        assert secret not in r.stdout + r.stderr, secret
    assert "https://api.example.com/status?api_key=***&region=eu" in r.stdout
    assert "wss://ws.example.com/feed?token=***" in r.stdout
    assert "https://***@storage.example.com/health?X-Amz-Signature=***" in r.stdout


def test_check_errors_hide_query_string_credentials() -> None:
    """`telltale check` reports a failing dependency's error without the URL's credentials."""
    deps = [{"name": "cloud", "url": "http://127.0.0.1:1/v1/status?access_token=chk-tok-1", "critical": True}]
    ws = "ws://127.0.0.1:1/feed?token=chk-ws-2"
    r = _telltale("check", "--json", env={"TELLTALE_HTTP_DEPENDENCIES": json.dumps(deps), "TELLTALE_WEBSOCKET_URL": ws})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "chk-tok-1" not in r.stdout + r.stderr and "chk-ws-2" not in r.stdout + r.stderr
    checks = json.loads(r.stdout)["checks"]
    assert checks["cloud"]["status"] == "unhealthy" and checks["websocket"]["status"] == "unhealthy"


def test_settings_secrets_include_url_credentials() -> None:
    """A library may print a credential without its name (`...failed for ws-tok-3`): the value itself is a secret."""
    from telltale.config.settings import Settings

    s = Settings(
        websocket_url="wss://ws.example.com/feed?token=ws-tok-3",
        http_dependencies=[{"name": "p", "url": "https://u:dep-pw-4@h/x?client_secret=dep-cs-5"}],
    )
    assert {"ws-tok-3", "dep-pw-4", "dep-cs-5"} <= set(s.secrets())
    assert "ws-tok-3" not in redact("auth rejected for ws-tok-3", s.secrets())


def test_quoted_pairs_of_a_printed_mapping() -> None:
    assert redact("connect({'user': 'app', 'password': 'pw-q1'})") == "connect({'user': 'app', 'password': '***'})"
    assert redact('body {"client_secret":"cs-q2","grant":"x"}') == 'body {"client_secret":"***","grant":"x"}'
    assert redact('{"path": "/a", "note": "x: y"}') == '{"path": "/a", "note": "x: y"}'


def test_a_secret_inside_another_leaves_nothing() -> None:
    from telltale.config.redact import secret_values

    assert redact("x abcdef y", secret_values(["abc", "abcdef", "", " "])) == "x *** y"
