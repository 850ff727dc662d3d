"""The health endpoints Kubernetes, load balancers and operators call."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from telltale.app import __version__
from telltale.app.auth import require_bearer
from telltale.app.state import ServiceState
from telltale.checks.base import Result, Status
from telltale.checks.registry import READY
from telltale.checks.runner import Report
from telltale.config.timestamps import iso_utc as _iso
from telltale.config.tokens import bearer_matches

router = APIRouter()
NO_STORE = {"Cache-Control": "no-store"}
HEALTH_JSON = "application/health+json"
_LIVE_BODY = b'{"status":"healthy"}'
# `?verbose` alone, or one of the usual truthy/falsy spellings (case-insensitive); anything else is a 422
_TRUTHY = frozenset({"", "1", "true", "yes", "on"})
_FALSY = frozenset({"0", "false", "no", "off"})


def _state(request: Request) -> ServiceState:
    return request.app.state.telltale


def verbose_flag(
    verbose: str | None = Query(default=None, description="plain text, one line per check: `?verbose`, 1/true/yes/on"),
) -> bool:
    """`?verbose=false` must not switch to plain text: only the usual truthy forms do."""
    if verbose is None:
        return False
    value = verbose.strip().lower()
    if value in _TRUTHY:
        return True
    if value in _FALSY:
        return False
    raise HTTPException(status_code=422, detail="verbose: expected 1, true, yes, on or 0, false, no, off")


def _code(status: Status) -> int:
    return 503 if status is Status.UNHEALTHY else 200


@router.get("/health/live", include_in_schema=True, summary="Liveness: the process can serve")
async def live() -> Response:
    # Never touches a dependency: a database outage must not make Kubernetes restart every pod.
    # Pre-rendered: kubelets and load balancers call this constantly.
    return Response(_LIVE_BODY, media_type="application/json", headers=NO_STORE)


@router.get("/health/ready", summary="Readiness: the critical `ready` checks pass")
async def ready(
    request: Request, verbose: bool = Depends(verbose_flag), exclude: list[str] = Query(default=[])
) -> Response:
    state = _state(request)
    if state.draining:
        return JSONResponse({"status": "unhealthy", "reason": "draining"}, status_code=503, headers=NO_STORE)
    names = [n for n in state.runner.select(READY, exclude) if state.runner.checks[n].critical]
    report = await state.runner.run(names)
    if verbose:
        return _verbose(
            report, reasons=bearer_matches(request.headers.get("authorization"), state.settings.health_token)
        )
    status = Status.UNHEALTHY if any(r.status is Status.UNHEALTHY for r in report.results.values()) else Status.HEALTHY
    body: dict[str, Any] = {"status": status.value, "timestamp": _iso(report.generated_at)}
    failing = [n for n, r in report.results.items() if r.status is Status.UNHEALTHY]
    if failing:
        body["failing"] = failing
    return JSONResponse(body, status_code=_code(status), headers=NO_STORE)


@router.get("/health", summary="Aggregate status for load balancers")
async def health(request: Request) -> Response:
    state = _state(request)
    report = await state.runner.run()
    body = {"status": report.status.value, "timestamp": _iso(report.generated_at)}
    return JSONResponse(body, status_code=_code(report.status), headers=NO_STORE)


@router.get("/health/detailed", summary="Every check with its readings (bearer token)")
async def detailed(request: Request, exclude: list[str] = Query(default=[])) -> Response:
    state = _state(request)
    require_bearer(request, state.settings.health_token, "TELLTALE_HEALTH_TOKEN")
    report = await state.runner.run(state.runner.select(exclude=exclude))
    if HEALTH_JSON in request.headers.get("accept", ""):
        return _ietf(state, report)
    now = time.time()
    body = {
        "status": report.status.value,
        "timestamp": _iso(report.generated_at),
        "checks": {n: r.to_dict(now) for n, r in report.results.items()},
        "metadata": _metadata(state),
    }
    return JSONResponse(body, status_code=_code(report.status), headers=NO_STORE)


@router.get("/health/checks/{name}", summary="One check (bearer token)")
async def one_check(request: Request, name: str, verbose: bool = Depends(verbose_flag)) -> Response:
    state = _state(request)
    require_bearer(request, state.settings.health_token, "TELLTALE_HEALTH_TOKEN")
    if name not in state.runner.checks:
        raise HTTPException(status_code=404, detail=f"unknown check {name!r}")
    report = await state.runner.run([name])
    result = report.results[name]
    if verbose:
        return _verbose(report, reasons=True)
    body = {"name": name, **result.to_dict(time.time())}
    return JSONResponse(body, status_code=_code(result.status), headers=NO_STORE)


def _verbose(report: Report, reasons: bool) -> Response:
    """Like the Kubernetes API server's `/readyz?verbose`: one line per check.

    A failing check's message names hosts, roles and databases, so an anonymous caller gets
    "reason withheld" (as the API server answers); the health token shows the reasons.
    """
    lines = [
        f"[{'+' if r.status is Status.HEALTHY else '-'}]{n} {r.status.value}"
        + ((f": {r.message}" if reasons else ": reason withheld") if r.status is not Status.HEALTHY else "")
        for n, r in report.results.items()
    ]
    verdict = "passed" if report.status is not Status.UNHEALTHY else "failed"
    lines.append(f"health check {verdict}")
    return PlainTextResponse("\n".join(lines) + "\n", status_code=_code(report.status), headers=NO_STORE)


def _metadata(state: ServiceState) -> dict[str, Any]:
    return {
        "environment": state.settings.environment,
        "version": __version__,
        "uptime_seconds": round(state.uptime(), 3),
        "mode": "background" if state.runner.background_interval else "on-demand",
    }


def _ietf(state: ServiceState, report: Report) -> Response:
    """draft-inadarei-api-health-check: status pass/warn/fail and `checks` keyed `component:measurement`."""
    checks: dict[str, list[dict[str, Any]]] = {}
    for name, r in report.results.items():
        checks.setdefault(f"{name}:responseTime", []).append(_ietf_check(r))
    body = {
        "status": report.status.ietf(),
        "version": __version__.split(".")[0],
        "releaseId": __version__,
        "serviceId": "telltale",
        "description": f"telltale ({state.settings.environment})",
        "checks": checks,
    }
    return JSONResponse(body, status_code=_code(report.status), media_type=HEALTH_JSON, headers=NO_STORE)


def _ietf_check(r: Result) -> dict[str, Any]:
    item: dict[str, Any] = {
        "componentType": r.component,
        "observedValue": round(r.latency_seconds * 1000, 3),
        "observedUnit": "ms",
        "status": r.status.ietf(),
        "time": _iso(r.checked_at),
    }
    if r.status is not Status.HEALTHY:
        item["output"] = r.error or r.message
    return item
