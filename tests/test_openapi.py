"""/openapi.json documents the bearer scheme and the shared answers; /docs loads nothing from another host."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

from telltale.app.openapi import BEARER, HEALTH_503, PROTECTED

from tests.apps import service

TOKENS = {
    "health_token": "health-token-1234",
    "ingest_token": "ingest-token-1234",
    "alert_webhook_token": "webhook-token-1234",
}


def _operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [
        (method, path, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op
    ]


async def test_bearer_scheme_and_security_on_each_protected_operation() -> None:
    async with service(**TOKENS) as client:
        schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"][BEARER] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"][BEARER]["description"],
    }
    documented = {(m, p) for m, p, _ in _operations(schema)}
    assert set(PROTECTED) <= documented  # every protected route is in the schema
    for method, path, op in _operations(schema):
        if (method, path) in PROTECTED:
            assert op["security"] == [{BEARER: []}], (method, path)
            assert "401" in op["responses"], (method, path)
        else:
            assert "security" not in op, (method, path)


async def test_exactly_the_documented_operations_answer_401_without_a_token() -> None:
    """The table in app/openapi.py against the routes' behaviour: a new protected route must be listed."""
    async with service(**TOKENS) as client:
        schema = (await client.get("/openapi.json")).json()
        for method, path, op in _operations(schema):
            url = path.replace("{name}", "disk")
            response = await client.request(method.upper(), url, json={} if method == "post" else None)
            assert (response.status_code == 401) == ("security" in op), (method, path, response.status_code)


async def test_413_422_and_503_where_they_apply() -> None:
    async with service(**TOKENS) as client:
        schema = (await client.get("/openapi.json")).json()
    ops = {(m, p): op for m, p, op in _operations(schema)}
    for key in [("post", "/api/v1/events"), ("post", "/api/v1/alerts/webhook")]:
        assert {"401", "413", "422"} <= set(ops[key]["responses"]), key
    assert "422" in ops[("get", "/api/v1/alerts/notifications")]["responses"]
    for key in HEALTH_503:
        assert "503" in ops[key]["responses"], key
    assert "503" not in ops[("get", "/health/live")]["responses"]  # liveness never follows a dependency
    for (method, _), op in ops.items():
        if method == "get":
            assert "413" not in op["responses"]
    problem = schema["components"]["schemas"]["Problem"]
    assert problem["properties"]["detail"]["type"] == "string"


async def test_the_schema_is_generated_once_and_the_same_each_time() -> None:
    async with service() as client:
        first = (await client.get("/openapi.json")).json()
        second = (await client.get("/openapi.json")).json()
    assert first == second


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in {"src", "href"} and v]


async def test_docs_reference_no_external_host_and_their_assets_are_served() -> None:
    async with service() as client:
        page = await client.get("/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        html = page.text
        parser = _Refs()
        parser.feed(html)
        assert parser.urls, "no src/href in /docs"
        urls = [*parser.urls, *re.findall(r"url: '([^']+)'", html)]
        for url in urls:
            assert not urlsplit(url).netloc and not url.startswith("//"), url
        assert not re.search(r"https?://", html), "an absolute URL in /docs"
        assert '"validatorUrl": null' in html  # no badge fetched from validator.swagger.io
        for url in parser.urls:
            asset = await client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, url
        js = await client.get("/docs/assets/swagger-ui-bundle.js")
        assert js.headers["content-type"].startswith("text/javascript") and b"SwaggerUIBundle" in js.content
        assert (await client.get("/docs/assets/nosuch.js")).status_code == 404
        assert (await client.get("/docs/assets/..%2Fconsts.py")).status_code == 404


async def test_docs_honour_the_root_path_behind_a_proxy() -> None:
    async with service() as client:
        client.app.root_path = "/telltale"  # type: ignore[attr-defined]
        html = (await client.get("/docs")).text
    assert "/telltale/docs/assets/swagger-ui-bundle.js" in html and "/telltale/openapi.json" in html
