"""Where landed files go: S3 through aiobotocore, or a local directory.

Like httpx's transports, the uploader talks to the small ``Sink`` interface and does not
know which one it has. ``put`` returns only once the sink has confirmed the bytes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from pathlib import Path
from typing import Any, Protocol

from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig

from streamer.durable import write_atomic
from tweetlake.storage import Location


class Sink(Protocol):
    location: Location

    async def put(self, key: str, body: bytes) -> None: ...

    async def close(self) -> None: ...


class LocalSink:
    def __init__(self, location: Location) -> None:
        self.location = location

    async def put(self, key: str, body: bytes) -> None:
        path = Path(self.location.key(key))
        await asyncio.to_thread(self._write, path, body)

    @staticmethod
    def _write(path: Path, body: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, body)
        if hashlib.md5(path.read_bytes()).digest() != hashlib.md5(body).digest():
            raise OSError(f"verification failed for {path}")

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

    async def put(self, key: str, body: bytes) -> None:
        client = await self._get_client()
        md5 = hashlib.md5(body).digest()
        await client.put_object(
            Bucket=self.location.bucket,
            Key=self.location.key(key),
            Body=body,
            ContentMD5=base64.b64encode(md5).decode(),
            ContentType="application/gzip",
        )

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None


def sink_for(uri: str, *, endpoint_url: str = "", region: str = "us-east-1") -> Sink:
    location = Location.parse(uri)
    if location.scheme == "s3":
        return S3Sink(location, endpoint_url=endpoint_url, region=region)
    return LocalSink(location)
