"""Access to the service: the bearer token every route but ``/healthz`` needs."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from urllib.parse import urlencode

from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from refproj.web.dashboard import error_page
from refproj.web.http import error_response


class BearerToken:
    """Requires the token on every route but ``/healthz``: ``Authorization: Bearer <token>``, or,
    for a browser (which cannot add that header to a page load or an EventSource), the
    ``refproj_token`` cookie. Opening ``/dashboard/runs?token=<token>`` once sets that cookie
    (HttpOnly, SameSite=Strict) and redirects to the same page without the token in its URL."""

    COOKIE = "refproj_token"

    def __init__(self, app: ASGIApp, token: str, on_reject: Callable[[], None] | None = None) -> None:
        self.app = app
        self.token = token.encode()
        self.on_reject = on_reject  # counts the 401s (refproj_errors_total{error_class="http_401"})

    def _matches(self, given: str | bytes | None, expected: bytes) -> bool:
        given_bytes = given.encode() if isinstance(given, str) else given or b""
        return hmac.compare_digest(given_bytes, expected)  # constant time: no timing oracle

    def _bearer(self, header: bytes | None) -> bool:
        # The scheme is case-insensitive (RFC 9110 11.1, RFC 6750 2.1): bearer, BEARER, Bearer.
        scheme, _, credentials = (header or b"").partition(b" ")
        return scheme.lower() == b"bearer" and self._matches(credentials.strip(b" "), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/healthz":
            connection = HTTPConnection(scope)
            offered = connection.query_params.get("token")
            if scope["path"].startswith("/dashboard/") and self._matches(offered, self.token):
                kept = [(k, v) for k, v in connection.query_params.multi_items() if k != "token"]
                # The path as the browser sent it: decoded, an id such as "%" or "a%2Fb" would
                # come back as another address.
                path = scope.get("raw_path") or scope["path"].encode()
                location = path.decode("latin-1") + ("?" + urlencode(kept) if kept else "")
                response: Response = RedirectResponse(location, status_code=303)
                response.set_cookie(self.COOKIE, self.token.decode(), httponly=True, samesite="strict")
                await response(scope, receive, send)
                return
            authorized = self._bearer(dict(scope["headers"]).get(b"authorization")) or self._matches(
                connection.cookies.get(self.COOKIE), self.token
            )
            if not authorized:
                if self.on_reject is not None:
                    self.on_reject()
                if scope["path"].startswith("/dashboard/"):  # a person in a browser: say how to sign in
                    response = error_page(
                        Request(scope),
                        401,
                        "Sign in to the console",
                        "This service needs its token (REFPROJ_API_TOKEN). Open this address once with"
                        " ?token=<token> added; the service then keeps the token in a cookie"
                        " and every console page and live update works without it.",
                    )
                else:
                    response = error_response(
                        401, "unauthorized", "this service needs Authorization: Bearer <REFPROJ_API_TOKEN>"
                    )
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
