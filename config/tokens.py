"""The one bearer-token check, for the service (app/auth.py) and the exporter alike.

A token setting holds one or more accepted values so a token can be rotated without downtime: deploy with
`old,new`, move the clients to `new`, then drop `old`. The presented credential is compared with every
accepted value, each in constant time over fixed-length digests, without stopping at the first match, so
neither the position of the match nor the length of a token shows in the timing. An empty or blank
credential never matches, even if an empty value slipped past the settings' validation.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from pydantic import SecretStr


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def token_matches(given: str | bytes, accepted: Iterable[SecretStr] | None) -> bool:
    """True when `given` equals one of the accepted tokens; never for an empty or blank value."""
    raw = given.encode() if isinstance(given, str) else given
    raw = raw.strip()
    candidate = _digest(raw)
    matched = False
    for token in accepted or ():
        expected = token.get_secret_value().strip().encode()
        # evaluate every comparison (no short-circuit), and never let a blank accepted value count
        same = hmac.compare_digest(candidate, _digest(expected))
        matched = (same and bool(expected)) or matched
    return matched and bool(raw)


def bearer_matches(authorization: str | bytes | None, accepted: Iterable[SecretStr] | None) -> bool:
    """True when an `Authorization` header value is `Bearer <one of the accepted tokens>`."""
    if not authorization:
        return False
    header = authorization.encode("latin-1", "replace") if isinstance(authorization, str) else authorization
    scheme, _, given = header.strip().partition(b" ")
    return scheme.lower() == b"bearer" and token_matches(given, accepted)
