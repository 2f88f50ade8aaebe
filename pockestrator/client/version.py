"""``pockestrator version``: the client's and the agent's versions, and whether their API
contracts agree.

Every answer of the agent carries ``Pockestrator-Api-Version`` (the OpenAPI document's
``info.version``); the client knows its own (``pockestrator.API_VERSION``). Within one major
number they understand each other; a different major is warned about on stderr by every
command (``ApiClient`` notices it on the first answer) and here. ``version`` also says when
the agent's own version differs from the client's (a hint to upgrade one of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pockestrator import API_VERSION, __version__
from pockestrator.client.output import fields

if TYPE_CHECKING:
    from pockestrator.client.commands import Console
    from pockestrator.client.http import ApiClient


def major(version: str) -> str:
    return version.split(".", 1)[0]


def api_mismatch(agent_api: str | None) -> str | None:
    """A warning when the agent keeps another major version of the API, else None."""
    if not agent_api or major(agent_api) == major(API_VERSION):
        return None
    return (
        f"warning: the agent speaks API {agent_api} and this client {API_VERSION}; "
        "commands may fail or misread answers: use a client of the agent's version"
    )


def version_warnings(agent: dict[str, Any]) -> list[str]:
    warnings = []
    mismatch = api_mismatch(agent.get("api_version"))
    if mismatch is not None:
        warnings.append(mismatch)
    if agent.get("version") and agent.get("version") != __version__:
        warnings.append(
            f"warning: the agent is version {agent.get('version')} and this client {__version__}"
        )
    return warnings


def version(client: ApiClient | None, console: Console) -> int:
    """The client's versions, and the agent's when one is reachable (``client`` given)."""
    from pockestrator.client.http import ClientError

    data: dict[str, Any] = {"client": {"version": __version__, "api_version": API_VERSION}}
    problem: ClientError | None = None
    if client is not None:
        try:
            info = client.call("GET", "/system/info").body
            data["agent"] = {
                "url": client.endpoint.url,
                "version": info.get("version"),
                "api_version": info.get("api_version"),
            }
        except ClientError as exc:
            problem = exc
    pairs = [("Client", f"{__version__} (API {API_VERSION})")]
    if "agent" in data:
        agent = data["agent"]
        pairs.append(
            ("Agent", f"{agent['version']} (API {agent['api_version']}) at {agent['url']}")
        )
    console.show(data, lambda: fields(pairs))
    for warning in version_warnings(data.get("agent") or {}):
        console.note(warning)
    if problem is not None:
        raise problem
    return 0
