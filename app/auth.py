"""Bearer-token checks, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request
from pydantic import SecretStr


def require_bearer(request: Request, token: SecretStr | None, setting: str) -> None:
    """401 unless the request carries `Authorization: Bearer <token>`; 401 too when none is configured."""
    if token is None:
        raise HTTPException(
            status_code=401,
            detail=f"this endpoint is disabled until a token is configured: set {setting}",
            headers={"WWW-Authenticate": "Bearer"},
        )
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise HTTPException(
            status_code=401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
