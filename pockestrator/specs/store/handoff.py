"""One-time superuser passwords: handed from the API to the reconciler, then forgotten.

Creating a service with ``superuser_email`` makes the API generate a password, show it once
and leave it here for the reconciler, which creates the PocketBase superuser with it and
then takes it (read and delete). The password exists in the store only in between;
``finish_deletion`` forgets one whose service went away first.
"""

from __future__ import annotations

from pockestrator.specs.store.base import StorePart


class SuperuserPasswords(StorePart):
    def put_superuser_password(self, name: str, password: str) -> None:
        with self._database.write() as db:
            db.execute(
                "INSERT INTO superuser_passwords (name, password, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET password = excluded.password",
                (name, password, self._now()),
            )

    def take_superuser_password(self, name: str) -> str | None:
        """Read and forget: the password exists in the store only until it is used."""
        with self._database.write() as db:
            row = db.execute(
                "SELECT password FROM superuser_passwords WHERE name = ?", (name,)
            ).fetchone()
            db.execute("DELETE FROM superuser_passwords WHERE name = ?", (name,))
        return str(row["password"]) if row else None

    def peek_superuser_password(self, name: str) -> str | None:
        rows = self._database.read(
            "SELECT password FROM superuser_passwords WHERE name = ?", (name,)
        )
        return str(rows[0]["password"]) if rows else None
