"""Talking to a real PocketBase the way its users do: a superuser, a collection, records.

``PocketBaseClient`` signs in as a superuser and keeps the token; ``notes`` makes a public
collection of text records (``title``) that tests write through and read back, so that
what a snapshot, restore or clone kept is compared through PocketBase's own API.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=30)


class PocketBaseError(Exception):
    pass


class PocketBaseClient:
    def __init__(self, base_url: str, host: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers: dict[str, str] = {"Host": host} if host else {}
        self.session = aiohttp.ClientSession(timeout=TIMEOUT)

    async def __aenter__(self) -> PocketBaseClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(
            method, self.base_url + path, json=body, headers=self.headers
        ) as response:
            data = await response.json(content_type=None)
            if response.status >= 300:
                raise PocketBaseError(f"{method} {path}: {response.status} {data}")
            return data

    async def sign_in(self, email: str, password: str) -> None:
        answer = await self.call(
            "POST",
            "/api/collections/_superusers/auth-with-password",
            {"identity": email, "password": password},
        )
        self.headers["Authorization"] = answer["token"]

    async def notes(self, name: str = "notes") -> None:
        """A collection ``name`` with one text field, open to anyone (the tests' writers)."""
        await self.call(
            "POST",
            "/api/collections",
            {
                "name": name,
                "type": "base",
                "fields": [{"name": "title", "type": "text"}],
                "listRule": "",
                "viewRule": "",
                "createRule": "",
            },
        )

    async def add(self, title: str, collection: str = "notes") -> str:
        record = await self.call("POST", f"/api/collections/{collection}/records", {"title": title})
        return str(record["id"])

    async def titles(self, collection: str = "notes") -> list[str]:
        """Every record's title, in the order of their ids."""
        titles: list[str] = []
        page = 1
        while True:
            answer = await self.call(
                "GET",
                f"/api/collections/{collection}/records?page={page}&perPage=500&sort=id",
            )
            titles += [item["title"] for item in answer["items"]]
            if page >= answer["totalPages"]:
                return titles
            page += 1
