"""PocketBase's own API, the three calls the agent makes to it, straight to the instance.

``sign_in`` (``POST /api/collections/_superusers/auth-with-password``) gives a token for
the agent's superuser; ``read`` (``GET /api/settings``) and ``update`` (``PATCH
/api/settings``, which merges the body into the current settings) use it. The agent talks
to ``127.0.0.1:<port>`` directly, not through Caddy: no trusted-proxy header is set, so
PocketBase sees the agent at 127.0.0.1, and no request of the agent is counted against a
client's rate limit.

An instance is hostile: it may answer anything, slowly, or without end. Every call has a
deadline, at most ``ANSWER_MAX`` bytes of an answer are read (the connection is dropped
beyond), and what an answer says reaches a message only through ``render.clean``. A token
or password never reaches an exception's text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from pockestrator.controllers.pbsettings.logins import AgentLogin
from pockestrator.controllers.pbsettings.render import clean, refusal

# /api/settings is about 2 KB; an auth answer with its record, less.
ANSWER_MAX = 256 * 1024
SUPERUSERS = "_superusers"


class SettingsError(Exception):
    """The instance's settings could not be read or written; the message is safe to show."""


class SettingsUnavailable(SettingsError):
    """The instance did not answer as PocketBase does (down, slow, or something else)."""


class LoginRefused(SettingsError):
    """The instance refused the agent's superuser (gone, or its password changed)."""


class SettingsRefused(SettingsError):
    """PocketBase refused the settings it was sent (400), naming the fields it refused."""


class TokenRefused(SettingsError):
    """A call with a token answered 401 or 403: the token is stale; sign in again."""


async def _answer(response: aiohttp.ClientResponse) -> Any:
    """The JSON of an answer of at most ANSWER_MAX bytes; SettingsUnavailable otherwise."""
    body = b""
    while len(body) <= ANSWER_MAX:
        chunk = await response.content.read(ANSWER_MAX + 1 - len(body))
        if not chunk:
            break
        body += chunk
    else:
        response.close()
        raise SettingsUnavailable(f"the instance's answer is larger than {ANSWER_MAX} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise SettingsUnavailable(f"the instance answered {response.status} without JSON") from None


class PocketBaseApi:
    """The calls, on one shared aiohttp session, each within ``timeout`` seconds."""

    def __init__(self, session: aiohttp.ClientSession, timeout: float) -> None:
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def _call(
        self,
        method: str,
        port: int,
        path: str,
        *,
        token: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": token} if token is not None else {}
        try:
            async with self.session.request(
                method,
                f"http://127.0.0.1:{port}{path}",
                json=body,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            ) as response:
                return response.status, await _answer(response)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SettingsUnavailable(
                f"PocketBase on port {port} did not answer {method} {path}: "
                f"{clean(str(exc) or type(exc).__name__, 200)}"
            ) from None

    async def sign_in(self, port: int, login: AgentLogin) -> str:
        """A superuser token for ``login``."""
        status, answer = await self._call(
            "POST",
            port,
            f"/api/collections/{SUPERUSERS}/auth-with-password",
            body={"identity": login.email, "password": login.password},
        )
        token = answer.get("token") if isinstance(answer, Mapping) else None
        if status == 200 and isinstance(token, str) and token:
            return token
        if status in (400, 401, 403, 404):
            # 400 is PocketBase's "Failed to authenticate."; 401 with an mfaId asks for a
            # second factor, which the agent cannot give.
            mfa = isinstance(answer, Mapping) and "mfaId" in answer
            raise LoginRefused(
                "PocketBase refused the agent's superuser"
                + (
                    " (superusers need a second factor: turn MFA off for _superusers, or "
                    "leave settings to the admin UI)"
                    if mfa
                    else ""
                )
            )
        raise SettingsUnavailable(f"signing in answered {status}")

    async def read(self, port: int, token: str) -> dict[str, Any]:
        """``GET /api/settings`` (PocketBase leaves the secrets out)."""
        status, answer = await self._call("GET", port, "/api/settings", token=token)
        return self._settings(status, answer, "reading")

    async def update(self, port: int, token: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """``PATCH /api/settings`` with ``patch``; the settings PocketBase then has."""
        status, answer = await self._call("PATCH", port, "/api/settings", token=token, body=patch)
        if status == 400:
            raise SettingsRefused(f"PocketBase refused its settings: {refusal(answer)}")
        return self._settings(status, answer, "writing")

    @staticmethod
    def _settings(status: int, answer: Any, doing: str) -> dict[str, Any]:
        if status in (401, 403):
            raise TokenRefused(f"{doing} the settings answered {status}")
        if status != 200 or not isinstance(answer, dict):
            raise SettingsUnavailable(f"{doing} the settings answered {status}")
        return answer
