"""The compactor's storage edge: pyarrow filesystems, listing, moves, and the lease store, from config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

from compactor.lease import LeaseStore, LocalLeaseStore, S3LeaseStore
from tweetlake.config import Config
from tweetlake.location import Location


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str = ""
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None

    def __repr__(self) -> str:  # never show keys
        return f"S3Settings(endpoint_url={self.endpoint_url!r}, region={self.region!r})"


@dataclass(frozen=True)
class Storage:
    fs: pafs.FileSystem
    landing: Location
    tables: Location
    s3: S3Settings | None  # None for a local lake

    @classmethod
    def from_config(cls, config: Config, s3: S3Settings | None = None) -> Storage:
        """Both locations on one kind of storage (``require_same_scheme`` is checked by the caller's config)."""
        landing = Location.parse(config.landing.uri)
        tables = Location.parse(config.tables.uri)
        if landing.scheme == "s3":
            s3 = s3 or S3Settings(endpoint_url=config.landing.endpoint_url, region=config.landing.region)
            return cls(filesystem("s3", s3), landing, tables, s3)
        return cls(pafs.LocalFileSystem(), landing, tables, None)

    def path(self, uri: str) -> str:
        """A ``file://`` or ``s3://`` URI as this filesystem's path."""
        return uri.removeprefix("file://") if uri.startswith("file://") else uri.removeprefix("s3://")

    def lease_store(self) -> LeaseStore:
        if self.s3 is None:
            return LocalLeaseStore(Path(self.tables.key("")))
        return S3LeaseStore(s3_client(self.s3), self.tables.bucket)

    def lease_key(self, relative: str) -> str:
        return self.tables.key(relative) if self.s3 is not None else relative


def s3_client(s3: S3Settings) -> Any:
    """A botocore S3 client for what pyarrow cannot do (conditional writes)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url or None,
        region_name=s3.region,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        aws_session_token=s3.session_token,
    )


def filesystem(scheme: str, s3: S3Settings) -> pafs.FileSystem:
    if scheme != "s3":
        return pafs.LocalFileSystem()
    kwargs: dict[str, str] = {"region": s3.region}
    if s3.endpoint_url:
        parsed = urlparse(s3.endpoint_url)
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")
    if s3.access_key and s3.secret_key:
        kwargs.update(access_key=s3.access_key, secret_key=s3.secret_key)
        if s3.session_token:
            kwargs["session_token"] = s3.session_token
    return pafs.S3FileSystem(**kwargs)


def list_files(fs: pafs.FileSystem, directory: str) -> list[pafs.FileInfo]:
    """Files directly under a directory (none when it does not exist); S3 'dir/' markers skipped."""
    infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True, recursive=False))
    return sorted((i for i in infos if i.type == pafs.FileType.File and not i.path.endswith("/")), key=lambda i: i.path)


def delete_files(fs: pafs.FileSystem, directory: str) -> None:
    for info in list_files(fs, directory):
        fs.delete_file(info.path)


def delete_tree(fs: pafs.FileSystem, directory: str) -> None:
    fs.delete_dir_contents(directory, missing_dir_ok=True)
    if isinstance(fs, pafs.LocalFileSystem) and fs.get_file_info(directory).type == pafs.FileType.Directory:
        fs.delete_dir(directory)  # S3 has no real directories


def open_output(fs: pafs.FileSystem, path: str) -> pafs.NativeFile:
    """An output stream; on a local disk the parent directories are made first (S3 has none)."""
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    return fs.open_output_stream(path)


def move(fs: pafs.FileSystem, source: str, destination: str) -> None:
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(destination.rsplit("/", 1)[0], recursive=True)
    fs.move(source, destination)
