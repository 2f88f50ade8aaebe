"""API tokens and dashboard sessions: create, list and revoke tokens; log in and out.

The policy (hashing, throttling, token shapes) lives in ``pockestrator.accounts`` and
``api.auth``; these handlers only apply it to requests. A login never says whether the
e-mail exists: the throttle decides before the account is looked up and counts every
e-mail alike, and an unknown account costs the same password check, so an unknown e-mail
and a wrong password get the same answers (status, body, headers) in about the same time,
whatever came before.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from pockestrator.accounts.throttle import (
    ADDRESS_BURST,
    ADDRESS_REFILL_SECONDS,
    THROTTLE_CAP_SECONDS,
)
from pockestrator.api.auth import SESSION_TTL, client_address, retry_after_header
from pockestrator.api.errors import ApiError, field_error, not_found
from pockestrator.api.inputs import parse_query, read_json, validate_model
from pockestrator.api.models.access import (
    AdminView,
    LoginResponse,
    LogoutResponse,
    TokenCreated,
    TokenList,
    TokenRevoked,
)
from pockestrator.api.models.requests import LoginBody, PageQuery, TokenCreateBody
from pockestrator.api.paging import page_of, with_next
from pockestrator.api.routing import (
    PASSWORDS,
    Link,
    Operation,
    agent_of,
    answer,
    creating,
    principal_of,
)
from pockestrator.api.views import token_view
from pockestrator.specs.errors import ErrorCode

log = structlog.get_logger("pockestrator.api")


async def list_tokens(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, PageQuery)
    tokens = agent_of(request).accounts.list_tokens()
    shown, cursor = page_of(tokens, query.limit, query.cursor)
    body = TokenList(tokens=[token_view(t) for t in shown], total=len(tokens), next=cursor)
    return with_next(answer(body), request, cursor)


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
    return field_error(401, ErrorCode.INVALID_CREDENTIALS, "password", "Invalid e-mail or password")


def _throttled(wait: float) -> ApiError:
    return field_error(
        429,
        ErrorCode.LOGIN_THROTTLED,
        "email",
        "Too many failed logins from this address; try again later",
        headers={"Retry-After": retry_after_header(wait)},
    )


def _peer(request: web.Request) -> str | None:
    """The TCP peer's address itself (not ``request.remote``, which a clone may replace)."""
    transport = request.transport
    peername = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    return None


async def login(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    address = client_address(
        _peer(request),
        request.headers.getall("X-Forwarded-For", []),
        agent.config.trusted_proxies,
    )
    body = await read_json(request, limit=agent.config.max_body_bytes)
    credentials = validate_model(LoginBody, body)
    accounts = agent.accounts
    throttle = accounts.login_throttle
    # Decided and counted as a failure before the account is looked up (so it cannot
    # depend on it) and before the slow check (so guesses sent together meet the lock).
    wait = throttle.admit(credentials.email, address)
    if wait > 0:
        raise _throttled(wait)
    admin = accounts.get_admin(credentials.email)
    passwords = request.app[PASSWORDS]
    ok = await passwords.verify(admin.password_hash if admin else None, credentials.password)
    if admin is None or not ok:
        log.warning(
            "login failed", address=address, admin_id=admin.id if admin is not None else None
        )
        raise _bad_credentials()
    throttle.succeeded(credentials.email, address)
    if passwords.needs_rehash(admin.password_hash):
        accounts.set_admin_password(admin.email, await passwords.hash(credentials.password))
    token, expires = accounts.create_session(admin.id, SESSION_TTL)
    log.info("admin logged in", admin_id=admin.id, address=address)
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
        raise field_error(
            400,
            ErrorCode.NOT_A_SESSION,
            "Authorization",
            "This is an API token, not a session; revoke it with DELETE /tokens/{id}",
        )
    agent_of(request).accounts.revoke_session(principal.bearer)
    return answer(LogoutResponse(revoked=True, message="Logged out"))


_LOGIN_RULE = (
    "Failed logins are throttled by client address (the TCP peer, or the X-Forwarded-For of"
    " a configured trusted proxy), alike whether an account has the e-mail or not: after n"
    " failures in a row an e-mail is refused from that address for 2^n x 100 ms (at most"
    f" {THROTTLE_CAP_SECONDS:g} s), and an address, whatever the e-mails, may fail"
    f" {ADDRESS_BURST} times and then once more every {ADDRESS_REFILL_SECONDS:g} s. A"
    " refused attempt is answered 429 with Retry-After and its password is not checked; a"
    " success forgets its e-mail's failures at its address. An unknown e-mail and a wrong"
    " password get the same 401."
)


OPERATIONS = [
    Operation(
        "GET",
        "/tokens",
        list_tokens,
        "listTokens",
        "List API tokens (never their secrets)",
        {200: TokenList},
        "access",
        query=PageQuery,
    ),
    creating(
        "/tokens",
        create_token,
        "createToken",
        "Create an API token; the token is in this answer only",
        "access",
        responses={201: TokenCreated},
        location="/tokens/{id}",
        body=TokenCreateBody,
        links=(Link("RevokeTheToken", "revokeToken", {"id": "id"}, status=201),),
    ),
    Operation(
        "DELETE",
        "/tokens/{id}",
        revoke_token,
        "revokeToken",
        "Revoke an API token",
        {200: TokenRevoked},
        "access",
    ),
    Operation(
        "POST",
        "/auth/login",
        login,
        "login",
        "Log in as an admin: an expiring bearer token for the dashboard",
        {200: LoginResponse},
        "access",
        errors=(401, 429),
        description=_LOGIN_RULE,
        body=LoginBody,
        public=True,
        response_headers={
            429: {"Retry-After": "Whole seconds (rounded up) until this address may try again."}
        },
    ),
    Operation(
        "POST",
        "/auth/logout",
        logout,
        "logout",
        "End the dashboard session of the bearer token",
        {200: LogoutResponse},
        "access",
        sessions_only=True,
    ),
]
