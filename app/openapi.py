"""What /openapi.json and /docs tell a caller, in one place.

The schema FastAPI generates from the routes knows neither that most endpoints want a bearer token (the
routes check it themselves, `auth.require_bearer`) nor the answers every route can give besides its own:
401 without the token, 413 over the body limit, 422 for a body or parameter that does not
validate, 503 from the health endpoints when a critical check fails. `document` adds them after
generation, keeping whatever a route declares itself (its `responses=` and request bodies win).

/docs is Swagger UI served from this process: its JavaScript and CSS come from the `fastapi-offline`
package (maintained, refreshed with Swagger UI releases, MIT, depends only on fastapi), so the page works
on a host with no route to a CDN and loads nothing from a third party. Turning /docs off by default was the
other choice; a monitoring service is often operated from networks without internet access, where the
page is most useful, and it exposes nothing /openapi.json does not.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

BEARER = "bearer"

# (method, path template) -> the setting whose tokens open it. tests/test_openapi.py calls every documented
# operation without a token and checks that exactly these answer 401.
PROTECTED: dict[tuple[str, str], str] = {
    ("get", "/health/detailed"): "TELLTALE_HEALTH_TOKEN",
    ("get", "/health/checks/{name}"): "TELLTALE_HEALTH_TOKEN",
    ("post", "/api/v1/events"): "TELLTALE_INGEST_TOKEN",
    ("post", "/api/v1/alerts/webhook"): "TELLTALE_ALERT_WEBHOOK_TOKEN",
    ("get", "/api/v1/alerts/notifications"): "TELLTALE_ALERT_WEBHOOK_TOKEN",
}

# Operations whose status follows the checks: 503 when a critical check is unhealthy.
HEALTH_503: dict[tuple[str, str], str] = {
    ("get", "/health"): "unhealthy: a critical check fails",
    ("get", "/health/ready"): "not ready: a critical `ready` check fails, or the service is draining after SIGTERM",
    ("get", "/health/detailed"): "unhealthy: a critical check fails (the body still lists every check)",
    ("get", "/health/checks/{name}"): "the check is unhealthy",
}

_BODY_METHODS = frozenset({"post", "put", "patch"})
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_PROBLEM_SCHEMA = {
    "title": "Problem",
    "type": "object",
    "properties": {"detail": {"title": "Detail", "type": "string"}},
    "required": ["detail"],
}

# Swagger UI's files in fastapi-offline's package data, by the name /docs/assets/{name} serves them under.
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
ASSET_PREFIX = "/docs/assets"


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _PROBLEM_REF}}}


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the bearer scheme, `security` on the protected operations and the shared answers; in place."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <token>`; each endpoint names the setting holding its tokens "
        "(several values each, for rotation). Compared in constant time.",
    }
    components.setdefault("schemas", {}).setdefault("Problem", _PROBLEM_SCHEMA)
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses: dict[str, Any] = op["responses"]
            key = (method, path)
            if key in PROTECTED:
                op["security"] = [{BEARER: []}]
                responses.setdefault(
                    "401",
                    _problem(f"missing or wrong bearer token, or {PROTECTED[key]} is not set (the endpoint is off)"),
                )
            if method in _BODY_METHODS:
                responses.setdefault(
                    "413", _problem("body over the limit (refused while it is read, chunked bodies too)")
                )
                responses.setdefault(
                    "422",
                    _problem("the body does not validate, holds NaN/Infinity, or nests too deep"),
                )
            elif op.get("parameters"):
                responses.setdefault("422", _problem("a query or path parameter does not validate"))
            if key in HEALTH_503:
                responses.setdefault("503", {"description": HEALTH_503[key]})
            if key == ("get", "/health/checks/{name}"):
                responses.setdefault("404", _problem("no check has that name"))
    return schema


def install_openapi(app: FastAPI) -> None:
    """Wrap the app's schema generation with `document`, and serve /docs from local assets.

    Call after every router is included; create the app with `docs_url=None, redoc_url=None`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API",
            swagger_js_url=f"{root}{ASSET_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSET_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSET_PREFIX}/favicon.png",
            # No online validator badge: it would send the schema's URL to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
        )

    @app.get(ASSET_PREFIX + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name not in _ASSETS:
            raise HTTPException(status_code=404, detail="no such asset")
        return Response(
            _asset(name), media_type=_ASSETS[name], headers={"Cache-Control": "public, max-age=86400, immutable"}
        )


@functools.cache
def _asset(name: str) -> bytes:
    """Read once, on the first /docs visit (about 1.7 MB in all); never touched by the hot path."""
    return (files("fastapi_offline") / "static" / name).read_bytes()
