"""An S3-compatible target: snapshots uploaded, verified, listed, fetched back and deleted.

A snapshot of ``<service>`` is the objects ``<prefix><service>/<id>/<path>``, one per
file of its manifest, and ``<prefix><service>/<id>/manifest.json``, which is written last,
only once every file has been uploaded *and read back* with the manifest's size and
SHA-256. So a remote snapshot is listed only when it is whole: an upload cut short (the
agent killed, the network gone) leaves objects without a manifest, never listed, and the
next upload of that snapshot resumes it.

Uploads are multipart above ``part_size``: each part goes with its Content-MD5 (the server
refuses a part that arrived changed), the completed object's ETag is checked against the
MD5s of the parts sent, and a resumed upload keeps the parts already there whose ETag is
the MD5 of the bytes it would send again. Files at or below one part go in one PUT with
their Content-MD5. With an encryption key every object is encrypted first (``encryption``)
and the read-back decrypts it, so what is verified is the plaintext the manifest hashed.

boto3 is used, synchronously, in a worker thread (``Snapshots`` calls ``asyncio.to_thread``):
it is the reference S3 client, speaks every S3 dialect's signing and addressing, and the
agent uploads one file at a time anyway. The secret is read from its root-only file when
a client is made and handed to botocore only; it is in no message this module writes.

Neighbours: ``targets`` (which target is which), ``folder`` (the local copies),
``manifest`` (what is verified).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pockestrator.config import S3Target
from pockestrator.controllers.snapshots import encryption
from pockestrator.controllers.snapshots.folder import PartialSnapshot, SnapshotError
from pockestrator.controllers.snapshots.manifest import (
    MANIFEST_MAX_BYTES,
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    check_snapshot_id,
)
from pockestrator.files import HashedFile, sized_sha256
from pockestrator.specs.grammar import check_project_name

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = structlog.get_logger("pockestrator.snapshots")

_READ = 1024 * 1024
_Part = tuple[str, int]  # an uploaded part's ETag and size
_MAX_KEYS = 1000


class TargetError(SnapshotError):
    """A target could not be reached, refused a request, or holds something wrong."""


@dataclass(frozen=True)
class Uploaded:
    target: str
    snapshot_id: str
    files: int
    bytes_sent: int
    resumed_files: int
    at: datetime


class S3Store:
    """One named S3 target (see the module)."""

    def __init__(self, name: str, target: S3Target) -> None:
        self.name = name
        self.target = target
        self._client: S3Client | None = None
        self._key: bytes | None = None

    @property
    def encrypted(self) -> bool:
        return self.target.encryption_key_file is not None

    def client(self) -> S3Client:
        if self._client is None:
            secret = encryption.read_root_only(
                self.target.secret_access_key_file, "secret access key"
            )
            self._client = boto3.client(
                "s3",
                endpoint_url=self.target.endpoint,
                region_name=self.target.region,
                aws_access_key_id=self.target.access_key_id,
                aws_secret_access_key=secret.decode("utf-8", "replace").strip(),
                config=Config(
                    s3={"addressing_style": "path" if self.target.path_style else "auto"},
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=60,
                    # Integrity is ours (Content-MD5 and the read-back); not every
                    # S3-compatible server knows the newer CRC headers.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
        return self._client

    def key(self) -> bytes | None:
        if self.target.encryption_key_file is None:
            return None
        if self._key is None:
            try:
                self._key = encryption.read_key(self.target.encryption_key_file)
            except encryption.EncryptionError as exc:
                raise TargetError(str(exc)) from None
        return self._key

    def _object(self, service: str, snapshot_id: str, path: str = "") -> str:
        return f"{self.target.prefix}{check_project_name(service)}/{snapshot_id}/{path}"

    # Uploads.

    def upload(self, folder: Path, manifest: Manifest, now: datetime) -> Uploaded:
        """Copy the snapshot in ``folder`` here, verified, manifest last (see the module)."""
        with _errors(self.name):
            sent = resumed = 0
            for entry in manifest.files:
                name = self._object(manifest.service, manifest.snapshot_id, entry.path)
                bytes_sent, was_resumed = self._upload_file(folder / entry.path, name, entry)
                sent += bytes_sent
                resumed += was_resumed
            for entry in manifest.files:
                self._check(self._object(manifest.service, manifest.snapshot_id, entry.path), entry)
            manifest_name = self._object(manifest.service, manifest.snapshot_id, MANIFEST_NAME)
            body = manifest.to_json().encode() + b"\n"
            key = self.key()
            if key is not None:
                body = b"".join(
                    encryption.encrypt(key, manifest_name, encryption.random_salt(), [body])
                )
            self.client().put_object(
                Bucket=self.target.bucket, Key=manifest_name, Body=body, ContentMD5=_md5_b64(body)
            )
            if self._read_manifest(manifest.service, manifest.snapshot_id) != manifest:
                raise TargetError(f"the manifest read back from {self.name} is not the one sent")
        log.info(
            "snapshot uploaded",
            service=manifest.service,
            snapshot=manifest.snapshot_id,
            target=self.name,
            bytes_sent=sent,
            resumed_files=resumed,
        )
        return Uploaded(self.name, manifest.snapshot_id, len(manifest.files), sent, resumed, now)

    def _stream(self, path: Path, name: str, entry: HashedFile) -> Iterator[bytes]:
        """What is sent for a file: its bytes, or their encryption (the same every time)."""
        plain = _read_file(path)
        key = self.key()
        if key is None:
            return plain
        return encryption.encrypt(key, name, encryption.file_salt(key, name, entry.sha256), plain)

    def _sent_size(self, entry: HashedFile) -> int:
        return encryption.encrypted_size(entry.size) if self.encrypted else entry.size

    def _upload_file(self, path: Path, name: str, entry: HashedFile) -> tuple[int, bool]:
        """Bytes sent and whether an earlier upload was resumed (or was already whole)."""
        client, bucket = self.client(), self.target.bucket
        size = self._sent_size(entry)
        there = self._head(name)
        if there is not None and there.get("sha256") == entry.sha256 and there["size"] == size:
            return 0, True  # an earlier, interrupted run got this far (checked again below)
        part_size = self.target.part_size
        if size <= part_size:
            body = b"".join(self._stream(path, name, entry))
            client.put_object(
                Bucket=bucket,
                Key=name,
                Body=body,
                ContentMD5=_md5_b64(body),
                Metadata={"sha256": entry.sha256},
            )
            return len(body), False
        upload_id, parts_there = self._open_multipart(name, entry)
        done: list[CompletedPartTypeDef] = []
        md5s = []
        sent = 0
        for number, part in enumerate(_rechunk(self._stream(path, name, entry), part_size), 1):
            digest = hashlib.md5(part, usedforsecurity=False)
            md5s.append(digest.digest())
            etag = f'"{digest.hexdigest()}"'
            if parts_there.get(number) != (etag, len(part)):
                reply = client.upload_part(
                    Bucket=bucket,
                    Key=name,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=part,
                    ContentMD5=base64.b64encode(digest.digest()).decode(),
                )
                if reply["ETag"] != etag:
                    raise TargetError(f"{self.name} stored part {number} of {name} changed")
                sent += len(part)
            done.append({"PartNumber": number, "ETag": etag})
        completed = client.complete_multipart_upload(
            Bucket=bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": done}
        )
        expected = hashlib.md5(b"".join(md5s), usedforsecurity=False).hexdigest()
        if completed.get("ETag", "").strip('"') not in (f"{expected}-{len(md5s)}", ""):
            raise TargetError(f"{self.name} assembled {name} from other parts than were sent")
        return sent, bool(parts_there)

    def _open_multipart(
        self, name: str, entry: HashedFile
    ) -> tuple[str, dict[int, tuple[str, int]]]:
        """An upload of ``name`` left by an interrupted run (with its parts), or a new one."""
        client, bucket = self.client(), self.target.bucket
        try:
            uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=name).get("Uploads", [])
        except ClientError as exc:
            if _status(exc) != 404:  # rclone answers NoSuchUpload when there is none
                raise
            uploads = []
        for upload in uploads:
            if upload.get("Key") != name:
                continue
            upload_id = upload["UploadId"]
            parts: dict[int, _Part] = {}
            marker = 0
            while True:
                page = client.list_parts(
                    Bucket=bucket, Key=name, UploadId=upload_id, PartNumberMarker=marker
                )
                for part in page.get("Parts", []):
                    parts[part["PartNumber"]] = (part["ETag"], part["Size"])
                if not page.get("IsTruncated"):
                    break
                marker = page["NextPartNumberMarker"]
            return upload_id, parts
        created = client.create_multipart_upload(
            Bucket=bucket, Key=name, Metadata={"sha256": entry.sha256}
        )
        return created["UploadId"], {}

    def _head(self, name: str) -> dict[str, Any] | None:
        try:
            reply = self.client().head_object(Bucket=self.target.bucket, Key=name)
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        metadata = {k.lower(): v for k, v in reply.get("Metadata", {}).items()}
        return {"size": reply["ContentLength"], "sha256": metadata.get("sha256")}

    def _check(self, name: str, entry: HashedFile) -> None:
        """Read ``name`` back; it must be the manifest's file (decrypted, when encrypted)."""
        size, sha256 = sized_sha256(self._get(name))
        if size != entry.size or sha256 != entry.sha256:
            raise TargetError(
                f"{entry.path} read back from {self.name} is not the file the manifest "
                "describes (size or SHA-256)"
            )

    def _get(self, name: str) -> Iterator[bytes]:
        body = self.client().get_object(Bucket=self.target.bucket, Key=name)["Body"]
        pieces: Iterable[bytes] = body.iter_chunks(_READ)
        key = self.key()
        if key is not None:
            pieces = encryption.decrypt(key, name, pieces)
        try:
            yield from pieces
        except encryption.EncryptionError as exc:
            raise TargetError(str(exc)) from None
        finally:
            body.close()

    # Listing, fetching, deleting.

    def list(self, service: str) -> list[Manifest]:
        """The whole snapshots of ``service`` here (those with a readable manifest)."""
        found = []
        with _errors(self.name):
            for snapshot_id in self._snapshot_ids(service):
                manifest = self._read_manifest(service, snapshot_id)
                if manifest is not None:
                    found.append(manifest)
        found.sort(key=lambda m: (m.created_at, m.snapshot_id), reverse=True)
        return found

    def _snapshot_ids(self, service: str) -> Iterator[str]:
        prefix = self._object(service, "x")[:-2]  # <prefix><service>/
        paginator = self.client().get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.target.bucket,
            Prefix=prefix,
            Delimiter="/",
            PaginationConfig={"PageSize": _MAX_KEYS},
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                candidate = common.get("Prefix", "")[len(prefix) :].rstrip("/")
                try:
                    yield check_snapshot_id(candidate)
                except ManifestError:
                    continue

    def _read_manifest(self, service: str, snapshot_id: str) -> Manifest | None:
        name = self._object(service, snapshot_id, MANIFEST_NAME)
        if self._head(name) is None:
            return None
        body = bytearray()
        for chunk in self._get(name):
            body += chunk
            if len(body) > MANIFEST_MAX_BYTES:
                return None
        try:
            manifest = Manifest.from_json(bytes(body))
        except ManifestError as exc:
            log.warning("unreadable remote manifest", target=self.name, key=name, error=str(exc))
            return None
        if manifest.service != service or manifest.snapshot_id != snapshot_id:
            return None
        return manifest

    def get(self, service: str, snapshot_id: str) -> Manifest:
        with _errors(self.name):
            manifest = self._read_manifest(service, check_snapshot_id(snapshot_id))
        if manifest is None:
            raise TargetError(f"{self.name} has no snapshot {snapshot_id} of {service}")
        return manifest

    def fetch(self, manifest: Manifest, partial: PartialSnapshot) -> None:
        """Every file of ``manifest`` into ``partial``, each checked against its hash."""
        with _errors(self.name):
            for entry in manifest.files:
                target = partial.path / entry.path
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                digest = hashlib.sha256()
                size = 0
                name = self._object(manifest.service, manifest.snapshot_id, entry.path)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as writer:
                    for chunk in self._get(name):
                        digest.update(chunk)
                        size += len(chunk)
                        writer.write(chunk)
                if size != entry.size or digest.hexdigest() != entry.sha256:
                    raise TargetError(
                        f"{entry.path} fetched from {self.name} is not the file the manifest "
                        "describes"
                    )

    def delete(self, service: str, snapshot_id: str) -> None:
        """The manifest first (the snapshot is gone from every list at once), then the rest."""
        client, bucket = self.client(), self.target.bucket
        prefix = self._object(service, check_snapshot_id(snapshot_id))
        with _errors(self.name):
            client.delete_object(Bucket=bucket, Key=prefix + MANIFEST_NAME)
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                for item in keys:
                    client.delete_object(Bucket=bucket, Key=item["Key"])


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as reader:
        while chunk := reader.read(_READ):
            yield chunk


def _rechunk(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def _md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


def _status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


class _errors:
    """botocore's failures as ``TargetError``, naming the target, never a credential."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            raise TargetError(
                f"target {self.target}: {error.get('Code', 'error')} "
                f"({_status(exc)}): {str(error.get('Message', ''))[:200]}"
            ) from None
        if isinstance(exc, BotoCoreError):
            raise TargetError(f"target {self.target}: {type(exc).__name__}: {exc}"[:400]) from None
        if isinstance(exc, encryption.EncryptionError):
            raise TargetError(f"target {self.target}: {exc}") from None


def remove_partial(partial: PartialSnapshot) -> None:
    shutil.rmtree(partial.path, ignore_errors=True)
