"""Where landed files go: S3 through aiobotocore, or a local directory.

Like httpx's transports, the uploader talks to the small ``Sink`` interface and does not
know which one it has. ``put`` returns only once the sink has confirmed the bytes, and it never
replaces a landed file: the same bytes again (a re-upload after a crash) are fine, other bytes
under an existing key raise ``LandingConflict``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, Protocol

from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tweetlake.durable import fsync_dir, write_atomic
from tweetlake.location import Location

INCOMING = "_incoming"


class LandingConflict(Exception):
    """The key already holds different bytes: it is left alone, never overwritten."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        super().__init__(f"{uri} already exists with different content")


class Sink(Protocol):
    location: Location

    async def put(self, key: str, body: bytes) -> bool:
        """Store ``body`` under a new ``key``: True when stored now, False when these bytes were there."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key`` (only ``check-config --online`` does, for its own probe object)."""
        ...

    async def close(self) -> None: ...


class LocalSink:
    def __init__(self, location: Location) -> None:
        self.location = location

    async def put(self, key: str, body: bytes) -> bool:
        return await asyncio.to_thread(self._write, key, body)

    def _write(self, key: str, body: bytes) -> bool:
        """Write a temp file, then link it to the key: ``link`` refuses an existing name atomically.

        Temp files live in ``_incoming/`` beside the streams, never under an hour's prefix.
        """
        path = Path(self.location.key(key))
        incoming = Path(self.location.key(INCOMING))
        path.parent.mkdir(parents=True, exist_ok=True)
        incoming.mkdir(parents=True, exist_ok=True)
        tmp = incoming / f"{os.getpid()}-{path.name}"
        write_atomic(tmp, body)
        try:
            os.link(tmp, path)
        except FileExistsError:
            if path.read_bytes() != body:
                raise LandingConflict(self.location.uri(key)) from None
            return False
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
        return True

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(Path(self.location.key(key)).unlink)

    async def close(self) -> None:
        return None


class S3Sink:
    """PUT with Content-MD5: S3 rejects the object unless the bytes it stored match."""

    def __init__(
        self, location: Location, *, endpoint_url: str = "", region: str = "us-east-1", timeout_s: float = 60.0
    ) -> None:
        self.location = location
        self._endpoint_url = endpoint_url or None
        self._region = region
        self._timeout_s = timeout_s
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def _get_client(self) -> Any:
        if self._client is None:
            config = BotoConfig(
                connect_timeout=10,
                read_timeout=self._timeout_s,
                retries={"max_attempts": 1, "mode": "standard"},  # the uploader owns retrying
            )
            self._client = await self._stack.enter_async_context(
                get_session().create_client(
                    "s3", endpoint_url=self._endpoint_url, region_name=self._region, config=config
                )
            )
        return self._client

    async def put(self, key: str, body: bytes) -> bool:
        """``If-None-Match: *``; when the key exists, ``If-Match`` our MD5 tells same bytes from other.

        The second PUT needs no read permission (the streamer role has none): S3 accepts it only
        when the stored object's ETag is the MD5 of these bytes, i.e. the object is this batch.
        """
        client = await self._get_client()
        md5 = hashlib.md5(body)
        common = {
            "Bucket": self.location.bucket,
            "Key": self.location.key(key),
            "Body": body,
            "ContentMD5": base64.b64encode(md5.digest()).decode(),
            "ContentType": "application/gzip",
        }
        try:
            await client.put_object(IfNoneMatch="*", **common)
            return True
        except ClientError as exc:
            if not _precondition_failed(exc):
                raise
        try:
            await client.put_object(IfMatch=f'"{md5.hexdigest()}"', **common)
            return False
        except ClientError as exc:
            if _precondition_failed(exc):
                raise LandingConflict(self.location.uri(key)) from None
            raise

    async def delete(self, key: str) -> None:
        client = await self._get_client()
        await client.delete_object(Bucket=self.location.bucket, Key=self.location.key(key))

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None


def _precondition_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "PreconditionFailed"


def sink_for(uri: str, *, endpoint_url: str = "", region: str = "us-east-1") -> Sink:
    location = Location.parse(uri)
    if location.scheme == "s3":
        return S3Sink(location, endpoint_url=endpoint_url, region=region)
    return LocalSink(location)
