"""The benchmark's input generator: real-shaped lines, and authors as a filtered stream has them."""

from __future__ import annotations

from bench.data import HOUR, write_hour
from tweetlake.landing import iter_records


def _records(root) -> list[dict]:
    records = []
    for path in sorted((root / "landing" / "tweets" / HOUR.partition).glob("*.ndjson.gz")):
        with path.open("rb") as stream:
            records += [record for _, record in iter_records(stream)]
    return records


def test_lines_are_about_the_size_of_real_tweets_with_full_expansions(tmp_path):
    written = write_hour(tmp_path, 400, per_file=150)
    assert (written.tweets, written.files) == (400, 3) and 4_500 < written.bytes_per_tweet < 6_500
    assert len(_records(tmp_path)) == 400


def test_distinct_authors_gives_every_tweet_its_own_author_with_its_profile(tmp_path):
    write_hour(tmp_path, 60, distinct_authors=True)
    records = _records(tmp_path)
    authors = [r["tweet"]["author_id"] for r in records]
    assert len(set(authors)) == 60
    profiles = [
        u for r in records for u in r.get("includes", {}).get("users", []) if u["id"] == r["tweet"]["author_id"]
    ]
    assert len(profiles) > 50  # a few recorded answers carry no author profile
    assert len({u["username"] for u in profiles}) == len(profiles)
