"""Access to the service: the bearer token every route but ``/healthz`` needs."""

from __future__ import annotations

import hmac
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

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()
        self.expected = b"Bearer " + self.token

    def _matches(self, given: str | bytes | None, expected: bytes) -> bool:
        given_bytes = given.encode() if isinstance(given, str) else given or b""
        return hmac.compare_digest(given_bytes, expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/healthz":
            connection = HTTPConnection(scope)
            offered = connection.query_params.get("token")
            if scope["path"].startswith("/dashboard/") and self._matches(offered, self.token):
                kept = [(k, v) for k, v in connection.query_params.multi_items() if k != "token"]
                location = scope["path"] + ("?" + urlencode(kept) if kept else "")
                response: Response = RedirectResponse(location, status_code=303)
                response.set_cookie(self.COOKIE, self.token.decode(), httponly=True, samesite="strict")
                await response(scope, receive, send)
                return
            authorized = self._matches(
                dict(scope["headers"]).get(b"authorization"), self.expected
            ) or self._matches(connection.cookies.get(self.COOKIE), self.token)
            if not authorized:
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
