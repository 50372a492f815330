"""What keeps other sites and stolen links out: CSRF tokens, cookies, same origin.

* Every form carries a synchronizer token derived from the session's secret cookie
  (HMAC-SHA256 of a fixed label under the token), so it is tied to the session, needs
  no storage, and a page of another site can neither read nor guess it.
* The sign-in form, before any session exists, uses a double submit: a random value
  in a SameSite=Strict cookie that the form must repeat.
* A POST whose ``Origin`` (or, without it, ``Referer``) names another host is refused
  before its form is read.
* Cookies are HttpOnly, SameSite=Lax (links into the console from mail or the RustDesk
  client keep the session; other sites' forms do not), and Secure when the request
  came over HTTPS: directly, or as a trusted proxy says with ``X-Forwarded-Proto``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "pyhbb_session"
LOGIN_COOKIE = "pyhbb_login"
FLASH_COOKIE = "pyhbb_flash"
CSRF_FIELD = "csrf"
MAX_COOKIE = 256


def csrf_token(session_token: str) -> str:
    mac = hmac.new(session_token.encode(), b"pyhbb console csrf", hashlib.sha256)
    return mac.hexdigest()


def same(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def cookie(request: Request, name: str) -> str | None:
    value = request.cookies.get(name)
    if value is None or not value or len(value) > MAX_COOKIE:
        return None
    return value


def set_cookie(
    response: Response,
    name: str,
    value: str,
    *,
    secure: bool,
    max_age: int | None = None,
    strict: bool = False,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict" if strict else "lax",
    )


def clear_cookie(response: Response, name: str, *, secure: bool) -> None:
    response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="lax")


def forwarded_header(request: Request, name: str, trusted: bool) -> str | None:
    """A proxy header's first value, only when the direct peer is a trusted proxy."""
    if not trusted:
        return None
    value = request.headers.get(name)
    if not value:
        return None
    return value.split(",", 1)[0].strip() or None


def is_https(request: Request, trusted: bool) -> bool:
    if request.url.scheme == "https":
        return True
    return (forwarded_header(request, "x-forwarded-proto", trusted) or "").lower() == "https"


def public_host(request: Request, trusted: bool) -> str:
    """``host[:port]`` as the browser reached us (a trusted proxy's X-Forwarded-Host)."""
    return forwarded_header(request, "x-forwarded-host", trusted) or request.headers.get("host", "")


def cross_origin(request: Request, trusted: bool) -> bool:
    """Whether a state-changing request names another site as its origin."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        # No header: old browsers and privacy settings; the token still protects us.
        # "null" comes from sandboxed frames and some redirects: refuse those.
        return source == "null"
    parts = urlsplit(source)
    return parts.netloc.lower() != public_host(request, trusted).lower()


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
