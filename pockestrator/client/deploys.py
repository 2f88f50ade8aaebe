"""``pockestrator deploy``, ``rollback`` and ``releases``: an app's releases from the CLI.

``deploy NAME DIR`` packs ``DIR``'s ``pb_hooks/``, ``pb_migrations/`` and ``pb_public/``
into a tar.gz (``apparchive.pack_app``: the same folder always packs to the same release);
``--from-archive FILE`` sends a tar.gz as it is. The agent checks either as hostile input,
whatever this side did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pockestrator import apparchive
from pockestrator.client.http import WAITING_TIMEOUT, ApiClient, ClientError, service_path
from pockestrator.client.output import short_time, table

ARCHIVE_TYPE = "application/gzip"


def pack_app(folder: Path) -> bytes:
    """``apparchive.pack_app``, its refusal as the CLI's error."""
    try:
        return apparchive.pack_app(folder)
    except apparchive.UnsafeAppArchive as exc:
        raise ClientError(str(exc)) from None


def deploy(
    client: ApiClient, console: Any, name: str, folder: Path | None, archive: Path | None
) -> int:
    if archive is not None:
        try:
            data = archive.read_bytes()
        except OSError as exc:
            raise ClientError(f"cannot read {archive}: {exc.strerror}") from None
    else:
        assert folder is not None
        data = pack_app(folder)
    reply = client.call(
        "POST",
        service_path(name, "releases"),
        upload=(data, ARCHIVE_TYPE),
        timeout=WAITING_TIMEOUT,
    )
    answer = reply.body
    result = answer.get("operation", {}).get("result", {})
    console.show(answer, lambda: _deployed_text(name, reply.status, result))
    return 0


def _deployed_text(name: str, status: int, result: dict[str, Any]) -> str:
    if status == 202:
        return f"{name}: deploy accepted, still in progress after a minute"
    if result.get("unchanged"):
        return f"{name}: release {result.get('release')} is already live"
    diff = result.get("diff", {})
    counts = ", ".join(f"{len(diff.get(k, []))} {k}" for k in ("added", "changed", "removed"))
    return (
        f"{name}: release {result.get('release')} is live ({counts}; "
        f"pre-deploy snapshot {result.get('snapshot')})"
    )


def rollback(client: ApiClient, console: Any, name: str, release: str | None) -> int:
    query = {"release": release} if release else None
    reply = client.call(
        "POST", service_path(name, "rollback"), query=query, timeout=WAITING_TIMEOUT
    )
    answer = reply.body
    result = answer.get("operation", {}).get("result", {})
    if reply.status == 202:
        text = f"{name}: rollback accepted, still in progress after a minute"
    elif result.get("unchanged"):
        text = f"{name}: release {result.get('release')} is already live"
    else:
        text = f"{name}: release {result.get('release')} is live again"
    console.show(answer, lambda: text)
    return 0


def releases(client: ApiClient, console: Any, name: str) -> int:
    answer = client.call("GET", service_path(name, "releases")).body

    def text() -> str:
        if not answer["releases"]:
            return f"{name} has no app release"
        rows = [
            [
                "*" if r["live"] else "",
                r["id"],
                short_time(r["created_at"]),
                r["created_by"],
                r["file_count"],
                r["size_bytes"],
                " ".join(
                    f"{sign}{len(r['diff'][key])}"
                    for sign, key in (("+", "added"), ("~", "changed"), ("-", "removed"))
                ),
            ]
            for r in answer["releases"]
        ]
        return table(["LIVE", "RELEASE", "CREATED", "BY", "FILES", "BYTES", "DIFF"], rows)

    console.show(answer, text)
    return 0
