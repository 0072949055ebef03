"""Who may read the API and its pages: anyone (`CITYKPI_API_PUBLIC_READS=true`, the default), or only the holders
of a valid, unrevoked agency token.

Any such token may read everything: the figures are the province's, not one agency's, so a token's agency and
indicator scope limit what it may submit, not what it may see. /metrics, /openapi.json and /docs stay open.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from web.tokens import audit, find_token

REALM = 'Bearer realm="citykpi"'
bearer = HTTPBearer(auto_error=False, description="an agency token (citykpi tokens create)")


class Unauthorized(Exception):
    """No token, or one that is not valid now; `invalid` tells the two apart for WWW-Authenticate (RFC 6750)."""

    def __init__(self, detail: str, *, invalid: bool) -> None:
        super().__init__(detail)
        self.detail, self.invalid = detail, invalid


def unauthorized_response(exc: Unauthorized) -> JSONResponse:
    challenge = REALM + (', error="invalid_token"' if exc.invalid else "")
    return JSONResponse({"error": "unauthorized", "detail": exc.detail}, 401,
                        headers={"WWW-Authenticate": challenge})


def read_dependencies(public: bool, connection: Callable[[], AbstractContextManager[psycopg.Connection]]
                      ) -> list[DependsParam]:
    """The dependencies every read route carries: none when reads are public. A refused read is audited
    (`connection` must be able to write), naming the token when the table knows it."""
    if public:
        return []

    # A plain def: FastAPI runs it in the thread pool, so the token look-up does not block the event loop.
    def require_token(request: Request,
                      credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        token = credentials.credentials.strip() if credentials is not None else ""
        with connection() as conn:
            holder = find_token(conn, token) if token else None
            if holder is not None and not holder.revoked:
                return
            audit(conn, action="read", remote=request.client.host if request.client else "unknown", status=401,
                  holder=holder, detail={"path": request.url.path})
        if not token:
            raise Unauthorized("reading needs a valid agency token (Authorization: Bearer …); "
                               "ask the administrator: citykpi tokens create", invalid=False)
        raise Unauthorized("the token is unknown or revoked", invalid=True)

    return [Depends(require_token)]
