"""Bearer-token checks for the service's routes; the comparison is config/tokens.py's, shared with the exporter."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import HTTPException, Request
from pydantic import SecretStr
from telltale.config.tokens import bearer_matches

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require_bearer(request: Request, tokens: Iterable[SecretStr] | SecretStr | None, setting: str) -> None:
    """401 unless the request carries `Authorization: Bearer <one of the tokens>`; 401 too when none is configured."""
    accepted = (tokens,) if isinstance(tokens, SecretStr) else tuple(tokens or ())
    if not accepted:
        raise HTTPException(
            status_code=401,
            detail=f"this endpoint is disabled until a token is configured: set {setting}",
            headers=_CHALLENGE,
        )
    if not bearer_matches(request.headers.get("authorization"), accepted):
        raise HTTPException(status_code=401, detail="missing or invalid bearer token", headers=_CHALLENGE)
