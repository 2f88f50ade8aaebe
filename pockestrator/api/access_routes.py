"""API tokens and dashboard sessions: create, list and revoke tokens; log in and out.

The policy (hashing, throttling, token shapes) lives in ``pockestrator.accounts`` and
``api.auth``; these handlers only apply it to requests. A login never says whether the
e-mail exists: an unknown account and a wrong password get the same answer in about the
same time.
"""

from __future__ import annotations

import structlog
from aiohttp import web
from pydantic import BaseModel

from pockestrator.accounts.passwords import needs_rehash
from pockestrator.api.auth import SESSION_TTL, retry_after_header
from pockestrator.api.errors import ApiError, Problem, not_found
from pockestrator.api.inputs import read_json, validate_model
from pockestrator.api.models import (
    AdminView,
    ErrorResponse,
    LoginBody,
    LoginResponse,
    LogoutResponse,
    TokenCreateBody,
    TokenCreated,
    TokenList,
    TokenRevoked,
)
from pockestrator.api.routing import (
    PASSWORDS,
    Operation,
    ResponseModels,
    agent_of,
    answer,
    principal_of,
)
from pockestrator.api.views import token_view
from pockestrator.specs.errors import ErrorCode

log = structlog.get_logger("pockestrator.api")


async def list_tokens(request: web.Request) -> web.StreamResponse:
    tokens = agent_of(request).accounts.list_tokens()
    return answer(TokenList(tokens=[token_view(token) for token in tokens], total=len(tokens)))


async def create_token(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    body = await read_json(request, limit=agent.config.max_body_bytes)
    name = validate_model(TokenCreateBody, body).name
    plaintext, record = agent.accounts.create_token(name)
    log.info("api token created", token_id=record.id, name=name, by=principal_of(request).name)
    return answer(
        TokenCreated(
            id=record.id,
            name=record.name,
            token=plaintext,
            created_at=record.created_at,
            message="Token created; it is shown only this once",
        ),
        201,
    )


async def revoke_token(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    token_id = request.match_info["id"]
    existing = agent.accounts.get_token(token_id)
    if existing is None:
        raise not_found("Token", token_id, ErrorCode.TOKEN_NOT_FOUND)
    newly = agent.accounts.revoke_token(token_id)
    log.info("api token revoked", token_id=token_id, by=principal_of(request).name)
    return answer(
        TokenRevoked(
            id=token_id,
            revoked=True,
            message="Token revoked" if newly else "Token was already revoked",
        )
    )


def _bad_credentials() -> ApiError:
    message = "Invalid e-mail or password"
    return ApiError(
        401,
        ErrorCode.INVALID_CREDENTIALS,
        message,
        [Problem("password", message, ErrorCode.INVALID_CREDENTIALS)],
    )


async def login(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    body = await read_json(request, limit=agent.config.max_body_bytes)
    credentials = validate_model(LoginBody, body)
    accounts = agent.accounts
    admin = accounts.get_admin(credentials.email)
    if admin is not None:
        wait = accounts.login_locked_for(admin)
        if wait > 0:
            message = "Too many failed logins for this account; try again later"
            raise ApiError(
                429,
                ErrorCode.LOGIN_THROTTLED,
                message,
                [Problem("email", message, ErrorCode.LOGIN_THROTTLED)],
                headers={"Retry-After": retry_after_header(wait)},
            )
    passwords = request.app[PASSWORDS]
    # The attempt counts as a failure until the password proves right, recorded before the
    # slow check: attempts sent together then meet the lock instead of all being checked
    # before the first failure is written.
    failures = accounts.record_login_failure(admin.id) if admin is not None else 0
    ok = await passwords.verify(admin.password_hash if admin else None, credentials.password)
    if admin is None or not ok:
        if admin is not None:
            log.warning("login failed", admin_id=admin.id, failures=failures)
        raise _bad_credentials()
    accounts.reset_login_failures(admin.id)
    if needs_rehash(admin.password_hash):
        accounts.set_admin_password(admin.email, await passwords.hash(credentials.password))
    token, expires = accounts.create_session(admin.id, SESSION_TTL)
    log.info("admin logged in", admin_id=admin.id)
    return answer(
        LoginResponse(
            token=token,
            expires_at=expires,
            expires_in=int(SESSION_TTL.total_seconds()),
            admin=AdminView(id=admin.id, email=admin.email),
        )
    )


async def logout(request: web.Request) -> web.StreamResponse:
    principal = principal_of(request)
    if principal.kind != "session":
        message = "This is an API token, not a session; revoke it with DELETE /tokens/{id}"
        raise ApiError(
            400,
            ErrorCode.NOT_A_SESSION,
            message,
            [Problem("Authorization", message, ErrorCode.NOT_A_SESSION)],
        )
    agent_of(request).accounts.revoke_session(principal.bearer)
    return answer(LogoutResponse(revoked=True, message="Logged out"))


_COMMON: dict[int, ResponseModels] = {400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse}
_BODY: dict[int, ResponseModels] = {413: ErrorResponse, 415: ErrorResponse}


def _responses(ok: int, model: type[BaseModel], *extra: int) -> dict[int, ResponseModels]:
    responses: dict[int, ResponseModels] = {ok: model, **_COMMON}
    responses.update({code: ErrorResponse for code in extra})
    return responses


OPERATIONS = [
    Operation(
        "GET",
        "/tokens",
        list_tokens,
        "listTokens",
        "List API tokens (never their secrets)",
        _responses(200, TokenList),
        "access",
    ),
    Operation(
        "POST",
        "/tokens",
        create_token,
        "createToken",
        "Create an API token; the token is in this answer only",
        {**_responses(201, TokenCreated), **_BODY},
        "access",
        body=TokenCreateBody,
    ),
    Operation(
        "DELETE",
        "/tokens/{id}",
        revoke_token,
        "revokeToken",
        "Revoke an API token",
        _responses(200, TokenRevoked, 404),
        "access",
    ),
    Operation(
        "POST",
        "/auth/login",
        login,
        "login",
        "Log in as an admin: an expiring bearer token for the dashboard",
        {**_responses(200, LoginResponse, 429), **_BODY},
        "access",
        description="Failed logins lock the account for 2^failures x 100 ms (capped at five"
        " minutes); while locked the answer is 429 with Retry-After.",
        body=LoginBody,
        public=True,
        response_headers={429: {"Retry-After": "Seconds until the account accepts a login."}},
    ),
    Operation(
        "POST",
        "/auth/logout",
        logout,
        "logout",
        "End the dashboard session of the bearer token",
        _responses(200, LogoutResponse),
        "access",
    ),
]
