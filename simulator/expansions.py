"""Which includes a request asked for: the simulator returns (and bills) only those."""

from __future__ import annotations

from aiohttp import web

ALL_EXPANSIONS = frozenset(
    {
        "author_id",
        "in_reply_to_user_id",
        "referenced_tweets.id",
        "referenced_tweets.id.author_id",
        "entities.mentions.username",
        "attachments.poll_ids",
        "attachments.media_keys",
        "geo.place_id",
        "edit_history_tweet_ids",
    }
)


def expansions_of(request: web.Request) -> frozenset[str]:
    """The ``expansions`` a request asks for (all of them when it names none, as tests' raw calls do)."""
    given = request.query.get("expansions")
    return frozenset(given.split(",")) if given else ALL_EXPANSIONS
