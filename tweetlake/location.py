"""Where a ``s3://`` or ``file://`` URI points, parsed once for both halves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass(frozen=True)
class Location:
    scheme: str  # "s3" or "file"
    bucket: str  # empty for file://
    prefix: str  # key prefix (s3) or absolute directory (file), no trailing slash

    @classmethod
    def parse(cls, uri: str) -> Location:
        parsed = urlparse(uri)
        if parsed.scheme == "s3":
            if not parsed.netloc:
                raise ValueError(f"missing bucket in {uri!r}")
            return cls("s3", parsed.netloc, parsed.path.strip("/"))
        if parsed.scheme == "file":
            path = unquote(parsed.netloc + parsed.path) if parsed.netloc else unquote(parsed.path)
            return cls("file", "", str(Path(path).absolute()).rstrip("/") or "/")
        raise ValueError(f"unsupported URI {uri!r}: use s3:// or file://")

    def key(self, relative: str) -> str:
        """Object key (s3) or file path (file) of a path relative to this location."""
        relative = relative.lstrip("/")
        if not self.prefix:
            return relative
        return f"{self.prefix}/{relative}" if relative else self.prefix

    def arrow_path(self, relative: str = "") -> str:
        """Path as pyarrow filesystems expect it (``bucket/key`` or an absolute path)."""
        key = self.key(relative)
        return f"{self.bucket}/{key}".rstrip("/") if self.scheme == "s3" else key

    def uri(self, relative: str = "") -> str:
        key = self.key(relative)
        return f"s3://{self.bucket}/{key}" if self.scheme == "s3" else f"file://{key}"
