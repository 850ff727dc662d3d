"""`POST /api/v1/alerts/webhook`: Alertmanager's webhook receiver, token-protected and idempotent;
`GET /api/v1/alerts/notifications`: what it recorded, in pages."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from telltale.alerting.notifications import BadCursor, WebhookPayload
from telltale.app.auth import require_bearer
from telltale.app.body import MAX_BODY_BYTES, MAX_JSON_DEPTH, BadBody, json_response, openapi_body, read_json

router = APIRouter()
log = logging.getLogger("telltale.alerting")
MAX_PAGE = 1000


class Recorded(BaseModel):
    id: str
    duplicate: bool = Field(description="true when this notification was already recorded (a repeated delivery)")


class Problem(BaseModel):
    detail: str


class NotificationPage(BaseModel):
    notifications: list[dict[str, Any]] = Field(
        description="newest first: id, received_at, receiver, status, group_key, alertnames, payload"
    )
    total: int = Field(description="notifications held in the store")
    next_cursor: str | None = Field(description="pass as `cursor` for the next (older) page; null on the last")


UNAUTHORIZED = {
    "model": Problem,
    "description": "missing or wrong bearer token, or TELLTALE_ALERT_WEBHOOK_TOKEN not set",
}


def _not_a_payload(detail: str) -> Response:
    return json_response({"detail": f"not an Alertmanager webhook payload: {detail}"}, 422)


@router.post(
    "/api/v1/alerts/webhook",
    summary="Alertmanager webhook receiver (bearer token)",
    response_model=None,
    responses={
        200: {"model": Recorded, "description": "recorded, or acknowledged as a duplicate"},
        401: UNAUTHORIZED,
        413: {"model": Problem, "description": f"body over {MAX_BODY_BYTES // (1024 * 1024)} MiB"},
        422: {
            "model": Problem,
            "description": "not JSON, not an Alertmanager webhook payload (version 4), NaN/Infinity, "
            f"or nested deeper than {MAX_JSON_DEPTH} levels",
        },
    },
    openapi_extra=openapi_body(WebhookPayload),
)
async def receive(request: Request) -> Response:
    state = request.app.state.telltale
    require_bearer(request, state.settings.alert_webhook_token, "TELLTALE_ALERT_WEBHOOK_TOKEN")
    try:
        body = await read_json(request, finite_only=True)  # stored and served back: finite numbers only
    except BadBody as exc:
        if exc.status == 413:
            return json_response({"detail": exc.detail}, 413)
        return _not_a_payload(exc.detail)
    try:
        payload = WebhookPayload.model_validate(body)
    except ValidationError as exc:
        reason = exc.errors(include_url=False, include_input=False)[0]
        return _not_a_payload(f"{'.'.join(map(str, reason['loc']))[:100]}: {reason['msg'][:200]}")
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
    return json_response({"id": item.id, "duplicate": not new}, 200)


@router.get(
    "/api/v1/alerts/notifications",
    summary="Recorded notifications, newest first, in pages (bearer token)",
    response_model=NotificationPage,
    responses={401: UNAUTHORIZED, 422: {"model": Problem, "description": "a bad `limit` or `cursor`"}},
)
async def notifications(
    request: Request,
    receiver: str | None = Query(None, max_length=256),
    limit: int = Query(100, ge=1, le=MAX_PAGE, description="at most this many items (a page also stops at 1 MiB)"),
    cursor: str | None = Query(None, max_length=64, description="`next_cursor` of the previous page"),
) -> Response:
    state = request.app.state.telltale
    require_bearer(request, state.settings.alert_webhook_token, "TELLTALE_ALERT_WEBHOOK_TOKEN")
    try:
        items, next_cursor = state.notifications.page(receiver, limit, cursor)
    except BadCursor as exc:
        return json_response({"detail": str(exc)}, 422)
    # Each item is stored serialized: the page is a concatenation, never a serialization of the store.
    tail = json.dumps({"total": len(state.notifications), "next_cursor": next_cursor}, separators=(",", ":"))
    body = b'{"notifications":[' + b",".join(n.json for n in items) + b"]," + tail[1:].encode()
    return Response(body, media_type="application/json")
