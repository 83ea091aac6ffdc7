"""Shared core of tweetlake: the config, the landing contract and logging used by both halves."""

from importlib.metadata import PackageNotFoundError, version


def build_version() -> str:
    """The installed distribution's version (``--version``, ``tweetlake_build_info``)."""
    try:
        return version("tweetlake")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
