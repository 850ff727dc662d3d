"""Bearer tokens: an empty credential never matches, several values rotate, one implementation for every route."""

from __future__ import annotations

import hmac
import re
from pathlib import Path

import httpx
import pytest
from fastapi import HTTPException
from pydantic import SecretStr
from starlette.requests import Request
from telltale.app.auth import require_bearer
from telltale.config import tokens
from telltale.config.settings import SettingsError, load_settings
from telltale.config.tokens import bearer_matches, token_matches

from tests.apps import service
from tests.test_exporter_support import make_exporter

ROOT = Path(__file__).resolve().parent.parent
GUARDED = {
    "health_token": ("GET", "/health/detailed"),
    "metrics_token": ("GET", "/metrics"),
    "ingest_token": ("POST", "/api/v1/events"),
    "alert_webhook_token": ("GET", "/api/v1/alerts/notifications"),
}


def _request(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


@pytest.mark.parametrize("setting", sorted(GUARDED))
@pytest.mark.parametrize("value", ["", " ", "\t", ",", " , "])
def test_an_empty_or_blank_token_is_refused_at_start(setting: str, value: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(**{setting: value})
    assert str(err.value).startswith(f"TELLTALE_{setting.upper()}: ")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer    ", "bearer \t", "", "Basic ", "Bearer ,"])
def test_a_blank_credential_never_matches_even_a_blank_configured_token(header: str) -> None:
    """Defense in depth: should an empty value slip past the settings, nothing matches it."""
    blank = [SecretStr(""), SecretStr(" ")]
    assert not bearer_matches(header, blank)
    assert not bearer_matches(header.encode(), blank)
    with pytest.raises(HTTPException) as err:
        require_bearer(_request(header), blank, "TELLTALE_HEALTH_TOKEN")
    assert err.value.status_code == 401


def test_any_of_several_tokens_matches() -> None:
    accepted = [SecretStr("old-token"), SecretStr("new-token")]
    assert token_matches("old-token", accepted) and token_matches(b"new-token", accepted)
    assert not token_matches("other", accepted) and not token_matches("old-token-x", accepted)
    assert bearer_matches("Bearer new-token", accepted) and bearer_matches("bearer  old-token ", accepted)
    assert not bearer_matches("Token new-token", accepted)


def test_every_accepted_token_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """No short-circuit on the first match: the time taken does not tell which token matched."""
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", counting)
    accepted = [SecretStr("a-token"), SecretStr("b-token"), SecretStr("c-token")]
    for given in ("a-token", "c-token", "nope"):
        calls.clear()
        token_matches(given, accepted)
        assert len(calls) == 3


@pytest.mark.parametrize("setting", sorted(GUARDED))
async def test_rotation_on_every_guarded_route(setting: str) -> None:
    method, path = GUARDED[setting]
    body = {"events": []} if method == "POST" else None
    async with service(**{setting: "old-token,new-token"}) as c:

        async def status(header: str | None) -> int:
            headers = {} if header is None else {"Authorization": header}
            r = await c.request(method, path, headers=headers, json=body)
            return r.status_code

        assert await status(None) == 401
        assert await status("Bearer") == 401
        assert await status("Bearer ") == 401
        assert await status("Bearer wrong") == 401
        assert await status("Bearer old-token") < 400
        assert await status("Bearer new-token") < 400


async def test_exporter_takes_rotated_metrics_tokens() -> None:
    app = make_exporter(metrics_token=["scrape-old", "scrape-new"])
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
            old = await c.get("/metrics", headers={"Authorization": "Bearer scrape-old"})
            new = await c.get("/metrics", headers={"Authorization": "Bearer scrape-new"})
            blank = await c.get("/metrics", headers={"Authorization": "Bearer "})
    finally:
        await app.aclose()
    assert old.status_code == new.status_code == 200
    assert blank.status_code == 401


def test_one_bearer_implementation() -> None:
    """Token comparisons live in config/tokens.py only; every guarded route goes through it."""
    sources = [p for d in ("app", "alerting", "exporter", "checks", "config") for p in (ROOT / d).rglob("*.py")]
    comparing = sorted(str(p.relative_to(ROOT)) for p in sources if re.search(r"compare_digest", p.read_text()))
    assert comparing == ["config/tokens.py"]
    parsing = sorted(
        str(p.relative_to(ROOT)) for p in sources if re.search(r"""partition\(b?["'] ["']\)""", p.read_text())
    )
    assert parsing == ["config/tokens.py"]
