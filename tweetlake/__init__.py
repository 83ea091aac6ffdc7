"""Shared core of tweetlake: the config, the landing contract and logging used by both halves."""
