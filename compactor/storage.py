"""pyarrow filesystems for the landing zone and the tables, from a URI and S3 settings."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow.fs as pafs

from tweetlake.config import Config
from tweetlake.storage import Location


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

    @classmethod
    def from_config(cls, config: Config, s3: S3Settings | None = None) -> Storage:
        s3 = s3 or S3Settings(endpoint_url=config.landing.endpoint_url, region=config.landing.region)
        landing = Location.parse(config.landing.uri)
        tables = Location.parse(config.tables.uri)
        if landing.scheme != tables.scheme:
            raise ValueError("landing.uri and tables.uri must both be s3:// or both file://")
        return cls(filesystem(landing.scheme, s3), landing, tables)


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


def open_output(fs: pafs.FileSystem, path: str) -> pafs.NativeFile:
    """An output stream; on a local disk the parent directories are made first (S3 has none)."""
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    return fs.open_output_stream(path)


def move(fs: pafs.FileSystem, source: str, destination: str) -> None:
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(destination.rsplit("/", 1)[0], recursive=True)
    fs.move(source, destination)
