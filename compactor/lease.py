"""One run per hour: a lease object in the tables location, taken before anything is written.

The lease covers everything an hour's run writes (Iceberg data files and commits, the CSV export,
rejections, the manifest). It expires, so a run that died does not block the hour forever, and a
live run renews it while it works. Taking, renewing and taking over an expired lease are
compare-and-swap operations: S3 conditional writes (``If-None-Match: *``, ``If-Match: <etag>``), or
on a local lake an flock'd read-compare-write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import ClientError

from tweetlake.durable import write_atomic
from tweetlake.logs import get_logger

log = get_logger("compactor.lease")


class HourLeased(Exception):
    """Another run holds the hour; ``str()`` names it and until when."""

    def __init__(self, what: str, holder: dict[str, Any]) -> None:
        self.holder = holder
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(holder.get("expires_at", 0))))
        super().__init__(
            f"{what} is being compacted by run {holder.get('run_id')} on {holder.get('owner')} (lease until {until})"
        )


class LeaseLost(Exception):
    """The lease expired and another run took the hour: this run must not publish anything."""


class LeaseStore(Protocol):
    """Compare-and-swap on one small object; ``tag`` identifies the version a caller read or wrote."""

    def create(self, key: str, body: bytes) -> str | None:
        """Write only if absent: the new tag, or None when the key exists."""
        ...

    def read(self, key: str) -> tuple[bytes, str] | None: ...

    def replace(self, key: str, body: bytes, tag: str) -> str | None:
        """Write only if the current tag is ``tag``: the new tag, or None when it changed."""
        ...

    def delete(self, key: str, tag: str) -> None: ...

    def uri(self, key: str) -> str:
        """The full URI of ``key`` (what logs and errors name)."""
        ...


@dataclass
class S3LeaseStore:
    client: Any  # a botocore S3 client
    bucket: str

    def create(self, key: str, body: bytes) -> str | None:
        return self._put(key, body, IfNoneMatch="*")

    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return answer["Body"].read(), answer["ETag"]

    def replace(self, key: str, body: bytes, tag: str) -> str | None:
        return self._put(key, body, IfMatch=tag)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def delete(self, key: str, tag: str) -> None:
        with contextlib.suppress(ClientError):  # gone, or taken over: not ours to delete
            self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=tag)

    def _put(self, key: str, body: bytes, **condition: str) -> str | None:
        try:
            return self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **condition)["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None
            raise


@dataclass
class LocalLeaseStore:
    """A local lake: the tag is the content; an flock'd lock file makes read-compare-write atomic."""

    root: Path

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[Path]:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield path

    def create(self, key: str, body: bytes) -> str | None:
        with self._locked(key) as path:
            if path.exists():
                return None
            write_atomic(path, body)
            return body.decode()

    def read(self, key: str) -> tuple[bytes, str] | None:
        with self._locked(key) as path:
            if not path.exists():
                return None
            body = path.read_bytes()
            return body, body.decode()

    def replace(self, key: str, body: bytes, tag: str) -> str | None:
        with self._locked(key) as path:
            if not path.exists() or path.read_bytes().decode() != tag:
                return None
            write_atomic(path, body)
            return body.decode()

    def uri(self, key: str) -> str:
        return f"file://{self.root / key}"

    def delete(self, key: str, tag: str) -> None:
        with self._locked(key) as path:
            if path.exists() and path.read_bytes().decode() == tag:
                path.unlink()


class Lease:
    """Held from ``acquire`` to ``release``; renewed by a background thread every third of its term."""

    def __init__(
        self, store: LeaseStore, key: str, *, run_id: str, term_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._key = key
        self.run_id = run_id
        self._term_s = term_s
        self._clock = clock
        self._tag: str | None = None
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _body(self) -> bytes:
        holder = {
            "run_id": self.run_id,
            "owner": f"{socket.gethostname()}:{os.getpid()}",
            "expires_at": self._clock() + self._term_s,
            "nonce": uuid.uuid4().hex,  # every write differs, so a tag names one write
        }
        return json.dumps(holder).encode()

    def acquire(self) -> None:
        """Take the hour, or raise HourLeased naming the run that holds it."""
        self._tag = self._store.create(self._key, self._body())
        if self._tag is None:
            found = self._store.read(self._key)
            if found is not None:
                body, tag = found
                holder = _holder(body)
                if float(holder.get("expires_at", 0)) > self._clock():
                    raise HourLeased(self._store.uri(self._key), holder)
                log.warning("lease_taken_over", key=self._store.uri(self._key), expired_holder=holder.get("run_id"))
                self._tag = self._store.replace(self._key, self._body(), tag)
            else:  # released in between
                self._tag = self._store.create(self._key, self._body())
            if self._tag is None:
                found = self._store.read(self._key)
                raise HourLeased(self._key, _holder(found[0]) if found else {"run_id": "?"})
        self._renewer = threading.Thread(target=self._renew_loop, name="lease-renewer", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._term_s / 3):
            self.renew()

    def renew(self) -> None:
        if self._tag is None or self._lost.is_set():
            return
        tag = self._store.replace(self._key, self._body(), self._tag)
        if tag is None:
            self._lost.set()
            log.error("lease_lost", key=self._store.uri(self._key), run_id=self.run_id)
        else:
            self._tag = tag

    def check(self) -> None:
        """Right before publishing: renew now and raise LeaseLost if the hour is no longer ours."""
        self.renew()
        if self._lost.is_set():
            raise LeaseLost(f"{self._key}: the lease of run {self.run_id} was taken over; nothing published")

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self._tag is not None and not self._lost.is_set():
            self._store.delete(self._key, self._tag)
        self._tag = None

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _holder(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {"run_id": "unreadable lease", "expires_at": 0}
    return value if isinstance(value, dict) else {"run_id": "unreadable lease", "expires_at": 0}
