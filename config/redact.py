"""Keep secrets out of anything Telltale prints: responses, logs, metrics, error texts, `telltale config`.

Three kinds of secret are hidden, each replaced by `***`:
- the value of any `name=value` pair whose name holds token, secret, key, password, passwd, pwd, signature,
  sig, auth or credential, case-insensitive, with any prefix or suffix (`access_token`, `client_secret`,
  `apikey`, `X-Amz-Signature`...): query strings of dependency and websocket URLs, and free text alike;
- the userinfo of every `scheme://userinfo@host` URL (`user:pass@` keeps the user, `token@` goes whole);
- `Bearer` credentials, quoted `'password': '...'` pairs of a printed mapping, and the configured secret
  values.

`redact(text)` works on any text; `redact_url` and `redact_tree` are for callers holding structured
data, which should redact each field before serializing it (never over an already-serialized line,
whose quotes a pattern can swallow). Text holding none of the triggers costs a few substring scans.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
SECRET_WORDS = ("token", "secret", "key", "password", "passwd", "pwd", "signature", "sig", "auth", "credential")
# what to look for: "signature" holds "sig", "password" and "passwd" hold "passw" (substring scans of
# the lowered text are ten times faster than an IGNORECASE alternation)
_NEEDLES = ("token", "secret", "key", "passw", "pwd", "sig", "auth", "credential")

# `scheme://userinfo@`: the userinfo runs to the last `@` before the host (a raw `@` in a password too),
# never across a path, query, fragment, whitespace or quote
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<info>[^/?#\s\"'<>\\]*)@")
# `name=value`: a name starts after a non-name character; the value ends at a delimiter of URLs or prose
_PAIR = re.compile(r"(?<![\w.\-\[\]])(?P<name>[\w.\-\[\]]+)(?P<eq>=|%3[dD])(?P<value>[^\s&;,#\"'<>()\[\]{}\\|]+)")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]+")
# `'password': 'x'` and `"client_secret":"x"`: a mapping printed into an error text (repr or JSON)
_QUOTED_PAIR = re.compile(
    r"(?P<q>['\"])(?P<name>[\w.\-]*(?:" + "|".join(SECRET_WORDS) + r")[\w.\-]*)(?P=q)(?P<sep>\s*:\s*)"
    r"(?P<v>['\"])(?:(?!(?P=v))[^\\\n]|\\.)+(?P=v)",
    re.IGNORECASE,
)


def secret_values(secrets: Iterable[str]) -> list[str]:
    """Configured secrets ready for `redact`: no empty or blank ones, each once, the longest first (a
    secret inside another must not be replaced first and leave the rest of the longer one)."""
    return sorted({s for s in secrets if s and not s.isspace()}, key=len, reverse=True)


def is_secret_name(name: str) -> bool:
    """True for a parameter or field name that holds a credential (`access_token`, `apikey`, `sig`...)."""
    low = name.lower()
    for needle in _NEEDLES:
        if needle in low:
            return True
    return False


def _userinfo(m: re.Match[str]) -> str:
    user, colon, _ = m["info"].partition(":")
    return f"{m['scheme']}{user}:{MASK}@" if colon else f"{m['scheme']}{MASK}@"


def _quoted_pair(m: re.Match[str]) -> str:
    return f"{m['q']}{m['name']}{m['q']}{m['sep']}{m['v']}{MASK}{m['v']}"


def _pair(m: re.Match[str]) -> str:
    name = m["name"]
    return f"{name}{m['eq']}{MASK}" if is_secret_name(name) else m.group(0)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace URL userinfo, secret-named `name=value` values, bearer tokens and the given secrets by `***`."""
    if not text:
        return text
    # substring checks first: most text (every access line) holds none of the patterns, and a
    # `str in str` scan costs a fraction of a regex substitution
    if "@" in text and "://" in text:
        text = _USERINFO.sub(_userinfo, text)
    if "=" in text or "%3" in text:  # `%3D` is an encoded `=`
        text = _PAIR.sub(_pair, text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(f"Bearer {MASK}", text)
    if ":" in text and ("'" in text or '"' in text) and is_secret_name(text):
        text = _QUOTED_PAIR.sub(_quoted_pair, text)
    for secret in secrets:
        if secret and secret in text and len(secret) >= 3 and not secret.isspace():
            text = text.replace(secret, MASK)
    return text


def _query(query: str) -> str:
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        parts.append(f"{name}={MASK}" if eq and value and is_secret_name(name) else part)
    return "&".join(parts)


def redact_url(url: object, secrets: Iterable[str] = ()) -> str:
    """One URL (a string or pydantic URL) with its userinfo and secret-named query and fragment values hidden."""
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return redact(text, secrets)
    if not parts.scheme or not parts.netloc:
        return redact(text, secrets)
    netloc = parts.netloc
    info, at, host = netloc.rpartition("@")
    if at:
        user, colon, _ = info.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    out = urlunsplit(
        (
            parts.scheme,
            netloc,
            redact(parts.path),
            _query(parts.query),
            _query(parts.fragment) if parts.fragment else "",
        )
    )
    if text.endswith("#") and not out.endswith("#"):
        out += "#"
    return redact(out, secrets)


def redact_tree(value: Any, secrets: Iterable[str] = (), *, names: bool = True) -> Any:
    """A copy of nested mappings and sequences ready for json.dumps, every string redacted; with `names`, the
    value of a field whose name holds a credential word (`password`, `client_secret`, `Authorization`...) is
    hidden whole. Other objects become their (redacted) text, so a serializer's `default=str` cannot print
    a secret unredacted; non-finite floats become text (NaN is not JSON)."""
    secrets = secrets if isinstance(secrets, list | tuple) else list(secrets)
    return _tree(value, secrets, names)


def redact_fields(fields: Mapping[str, Any], secrets: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """`redact_tree` for a record's named fields (a log line's extras): the names are the caller's own,
    not data, so only the values are redacted; a value under a credential's name is hidden whole."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        t = type(value)
        if t is str:
            out[key] = MASK if value and _secret_key(key) else redact(value, secrets)
        elif t in _PLAIN:
            out[key] = value
        elif t is bytes and value and _secret_key(key):
            out[key] = MASK
        else:
            out[key] = _tree(value, secrets, True)
    return out


_PLAIN = frozenset({int, bool, type(None)})
_SECRET_KEYS: dict[str, bool] = {}  # field names seen, and whether each names a credential


def _secret_key(key: str) -> bool:
    known = _SECRET_KEYS.get(key)
    if known is None:
        known = is_secret_name(key)
        if len(_SECRET_KEYS) < 4096:  # log field names repeat; data used as keys must not grow this
            _SECRET_KEYS[key] = known
    return known


def _tree(value: Any, secrets: list[str] | tuple[str, ...], names: bool) -> Any:
    t = type(value)  # exact-type checks first: this runs on every field of every log line
    if t is str:
        return redact(value, secrets)
    if t in _PLAIN:
        return value
    if t is dict or isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            key = redact(k if type(k) is str else str(k), secrets)
            if names and v and type(v) in (str, bytes) and _secret_key(key):
                out[key] = MASK
            else:
                out[key] = _tree(v, secrets, names)
        return out
    if isinstance(value, str):
        return redact(str(value), secrets)
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_tree(v, secrets, names) for v in value]
    try:
        text = str(value)
    except Exception:
        text = f"<unprintable {type(value).__name__}>"
    return redact(text, secrets)


def url_secrets(url: object) -> list[str]:
    """The secret parts of a URL (userinfo password or token, secret-named query values), to add to the
    configured secrets so they are hidden even where a library prints them without their name."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return []
    out: list[str] = []
    info, at, _ = parts.netloc.rpartition("@")
    if at and info:
        user, colon, password = info.partition(":")
        out.append(password if colon else user)
    for part in f"{parts.query}&{parts.fragment}".split("&"):
        name, eq, value = part.partition("=")
        if eq and value and is_secret_name(name):
            out.append(value)
    return [s for s in out if len(s) >= 3 and not s.isspace()]
