"""The token commands: list, create (the secret to stdout alone) and revoke by id or name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pockestrator.client.apply import LIST_PAGE
from pockestrator.client.commands import Console
from pockestrator.client.http import ApiClient, ClientError
from pockestrator.client.output import short_time, table


def all_tokens(client: ApiClient) -> list[dict[str, Any]]:
    """Every token, page by page along ``next`` (the API's one pagination style)."""
    tokens: list[dict[str, Any]] = []
    query: dict[str, str | int | bool] = {"limit": LIST_PAGE}
    while True:
        body = client.call("GET", "/tokens", query=query).body
        tokens += list(body.get("tokens") or [])
        if not body.get("next"):
            return tokens
        query["cursor"] = str(body["next"])


def token_list(client: ApiClient, console: Console) -> int:
    tokens = all_tokens(client)
    rows = [
        [
            t.get("id"),
            t.get("name"),
            short_time(t.get("created_at")),
            short_time(t.get("last_used_at")),
            short_time(t.get("revoked_at")) if t.get("revoked") else "no",
        ]
        for t in tokens
    ]
    console.show(tokens, lambda: table(("ID", "NAME", "CREATED", "LAST USED", "REVOKED"), rows))
    return 0


def token_create(
    client: ApiClient,
    console: Console,
    name: str,
    save: Callable[[str], Path] | None,
) -> int:
    """The token goes to stdout alone (``TOKEN=$(pockestrator token create ci)`` works);
    the notes go to stderr."""
    answer = client.call("POST", "/tokens", body={"name": name}).body
    token = str(answer["token"])
    console.show(answer, lambda: token)
    console.note(f"created token {name!r} (id {answer.get('id')}); it is shown only this once")
    if save is not None:
        path = save(token)
        console.note(f"saved to {path} (mode 0600); the CLI uses it when no token is given")
    return 0


def resolve_token_id(tokens: Sequence[dict[str, Any]], key: str) -> str:
    """A token's id from its id or its name (a name must match one live token)."""
    if any(t.get("id") == key for t in tokens):
        return key
    live = [t for t in tokens if t.get("name") == key and not t.get("revoked")]
    if len(live) == 1:
        return str(live[0]["id"])
    if not live:
        raise ClientError(
            f"no live token has the id or name {key!r} (see `pockestrator token list`)"
        )
    ids = ", ".join(str(t.get("id")) for t in live)
    raise ClientError(f"{len(live)} live tokens are named {key!r} ({ids}); revoke one by its id")


def token_revoke(client: ApiClient, console: Console, key: str) -> int:
    tokens = all_tokens(client)
    token_id = resolve_token_id(tokens, key)
    answer = client.call("DELETE", f"/tokens/{token_id}").body
    console.show(answer, lambda: f"{answer.get('message')} (id {token_id})")
    return 0
