"""Litestar wiring of authentication, authorization and rate limits, shared by both services.

Litestar's OAuth2 password-bearer backend provides the middleware slot and the OpenAPI security
scheme (the "Authorize" button of /docs); our middleware class verifies with
`common/tokens.py`. A request without `Authorization` passes as anonymous (`request.user` is
None) and the guards decide: catalogue reads are public, the rest needs a token or the admin
role. A request with a bad token is a 401 everywhere, public endpoints included.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection, Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AuthenticationResult
from litestar.security.jwt import JWTCookieAuthenticationMiddleware, OAuth2PasswordBearerAuth

from clickpulse_services.common.telemetry import annotate
from clickpulse_services.common.tokens import Principal, TokenVerifier, unauthorized

TOKEN_URL = "/auth/token"
# OpenAPI: "a token if you have one" (public operations); the app-wide requirement is the token.
OPTIONAL_TOKEN: list[dict[str, list[str]]] = [{}, {"BearerToken": []}]
NO_TOKEN: list[dict[str, list[str]]] = [{}]


class BearerTokenMiddleware(JWTCookieAuthenticationMiddleware):
    """`Authorization: Bearer <JWT>` verified by the app's TokenVerifier; none = anonymous."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization")
        if header is None:
            return AuthenticationResult(user=None, auth=None)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("expected the header 'Authorization: Bearer <token>'")
        verifier: TokenVerifier = connection.app.state.tokens
        principal = await verifier.verify(token.strip())
        # The span's user is the verified subject, never what a client claims.
        annotate(user_id=str(principal.id))
        return AuthenticationResult(user=principal, auth=token)


async def _unused_retrieve_user(token: Any, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    raise NotImplementedError  # BearerTokenMiddleware does not call it


def bearer_auth() -> OAuth2PasswordBearerAuth[Principal, Any]:
    return OAuth2PasswordBearerAuth(
        # Verification uses the key set (common/tokens.py), not a shared secret.
        token_secret="unused: tokens are verified against the JWKS",
        token_url=TOKEN_URL,
        retrieve_user_handler=_unused_retrieve_user,
        authentication_middleware_class=BearerTokenMiddleware,
        exclude=["^/health$", "^/docs", "^/schema"],
        description=(
            "Sign in at POST /auth/token (OAuth2 password flow: username = email) for a "
            "short-lived RS256 access token; send it as `Authorization: Bearer <token>`."
        ),
    )


def _options(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Litestar's authentication does not look at OPTIONS requests (CORS preflights carry no
    credentials), so none has a user. The only OPTIONS handlers are Litestar's automatic ones,
    which tell the `Allow` header and nothing else: the guards let them answer, where a 401
    would be an answer no client could avoid."""
    return connection.scope.get("method") == "OPTIONS"


# The guards are coroutine functions: Litestar runs a plain function guard in a worker thread
# (anyio's `to_thread`), a thread hop per guarded request: ~10 % of the e-commerce API's CPU
# under the mixed scenario, whose every operation is guarded, for a check of microseconds.
async def requires_user(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    if _options(connection):
        return
    if not isinstance(connection.scope.get("user"), Principal):
        raise NotAuthorizedException(
            detail="sign in first: this operation needs a bearer token from POST /auth/token",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def requires_admin(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    await requires_user(connection, handler)
    if not _options(connection) and not connection.scope["user"].is_admin:
        raise PermissionDeniedException(detail="this operation needs the admin role")


def current_user(request: Request[Any, Any, Any]) -> Principal:
    """The verified caller of an operation guarded by `requires_user`."""
    user = request.scope.get("user")
    assert isinstance(user, Principal), "guard the operation with requires_user"
    return user
