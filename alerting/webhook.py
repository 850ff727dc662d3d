"""`POST /api/v1/alerts/webhook`: Alertmanager's webhook receiver, token-protected and idempotent."""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from telltale.alerting.notifications import WebhookPayload
from telltale.app.auth import require_bearer

router = APIRouter()
log = logging.getLogger("telltale.alerting")
MAX_BODY = 4 * 1024 * 1024


@router.post("/api/v1/alerts/webhook", summary="Alertmanager webhook receiver (bearer token)")
async def receive(request: Request) -> JSONResponse:
    state = request.app.state.telltale
    require_bearer(request, state.settings.alert_webhook_token, "TELLTALE_ALERT_WEBHOOK_TOKEN")
    body = await request.body()
    if len(body) > MAX_BODY:
        return JSONResponse({"detail": f"body larger than {MAX_BODY} bytes"}, status_code=413)
    try:
        payload = WebhookPayload.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        reason = exc.errors(include_url=False, include_input=False)[0] if isinstance(exc, ValidationError) else None
        detail = f"{'.'.join(map(str, reason['loc']))}: {reason['msg']}" if reason else "body is not JSON"
        return JSONResponse({"detail": f"not an Alertmanager webhook payload: {detail}"}, status_code=422)
    item, new = state.notifications.record(payload)
    if new:
        log.info(
            "alert notification",
            extra={
                "receiver": item.receiver,
                "status": item.status,
                "alertnames": list(item.alertnames),
                "notification_id": item.id,
            },
        )
    return JSONResponse({"id": item.id, "duplicate": not new}, status_code=200)


@router.get("/api/v1/alerts/notifications", summary="Recorded notifications, newest first (bearer token)")
async def notifications(
    request: Request, receiver: str | None = None, limit: int = Query(100, ge=1, le=1000)
) -> JSONResponse:
    state = request.app.state.telltale
    require_bearer(request, state.settings.alert_webhook_token, "TELLTALE_ALERT_WEBHOOK_TOKEN")
    items = state.notifications.list(receiver, limit)
    return JSONResponse({"notifications": [n.to_dict() for n in items], "total": len(state.notifications)})
