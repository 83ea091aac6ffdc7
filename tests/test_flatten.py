"""The reference flattening, on real recorded X API payloads and on any JSON (property tests)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compactor import schema
from compactor.flatten import Rejected, flatten_tweet, flatten_users
from tweetlake.landing import encode_line, tweet_record

DATA = Path(__file__).parent / "data" / "xapi"
AT = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)


def _record(path: str, rules: bool = False) -> dict:
    payload = json.loads((DATA / path).read_text())
    tweet = payload["data"][0] if isinstance(payload["data"], list) else payload["data"]
    return json.loads(
        encode_line(
            tweet_record(
                tweet,
                payload.get("includes", {}),
                collected_at=AT,
                collected_via="stream" if rules else "poll:users_tweets",
                account={"id": "1", "username": "followed"},
                matching_rules=payload.get("matching_rules") if rules else None,
            )
        )
    )


def _row(path: str, rules: bool = False) -> dict:
    row = flatten_tweet(_record(path, rules))
    pa.RecordBatch.from_pylist([row], schema=schema.TWEETS)  # every row fits the schema
    return row


def test_withheld_tweet():
    row = _row("tweets/015.json")
    assert row["id"] == "1388424788171841537"
    assert row["withheld_in"] == ["IN"] and row["withheld_copyright"] is False
    assert row["author_username"] == "manavjivan"
    assert row["text"].startswith("When the pandemic first hit “India fought a phony war")
    assert row["urls"] == ["http://econ.st/3u72y2l"]


def test_geo_reply_with_mentions():
    row = _row("tweets/009.json")
    assert row["place_id"] == "3078869807f9dd36" and row["place_full_name"] == "Berlin, Germany"
    assert row["replied_to_id"] == "1501958949863661574"
    assert row["mentions"] == ["j2bryson", "Twitter"]
    assert row["author_username"] == "IgorBrigadir"


def test_edited_tweet_keeps_its_history():
    row = _row("tweets/005.json")
    assert row["edit_history_tweet_ids"] == ["1576994746135764992", "1576994789110992896"]
    assert row["author_username"] == "wongmjane" and row["text"] == "hey :) https://t.co/rnwEIoNuqd"


def test_cashtags_hashtags_media():
    row = _row("tweets/003.json")
    assert row["cashtags"][:3] == ["AMD", "BTC", "TWTR"]
    assert row["hashtags"] == ["business", "NFT", "StockMarket", "option"]
    assert row["media_keys"] == ["3_1611076914248286208"] and row["media_types"] == ["photo"]
    assert _row("tweets/011.json")["media_types"] == ["video"]


def test_retweet_names_the_original_author():
    row = _row("tweets/012.json")
    assert row["retweeted_id"] == "1589671906718134272"
    assert row["retweeted_username"] == "S3NT1N3L17"
    assert row["text"].startswith("RT @S3NT1N3L17:")


def test_stream_line_matching_rules_and_emoji():
    row = _row("tweets_search_stream/001.json", rules=True)
    assert row["matching_rules"] == ["1377649934414049282"]
    assert row["collected_via"] == "stream"
    assert _row("tweets/011.json")["text"] == "She's GOING with it! 🐍 https://t.co/uXqSAGWkWJ"


def test_every_recorded_timeline_tweet_flattens_with_ids_as_strings():
    payload = json.loads((DATA / "users_id_tweets" / "005.json").read_text())
    rows = []
    for tweet in payload["data"]:
        record = tweet_record(
            tweet,
            payload["includes"],
            collected_at=AT,
            collected_via="poll:users_tweets",
            account={"id": "2351222345", "username": "PhillyNEFL"},
        )
        rows.append(flatten_tweet(json.loads(encode_line(record))))
        assert flatten_users(record)[0]["username"] == "PhillyNEFL"
    table = pa.Table.from_pylist(rows, schema=schema.TWEETS)
    assert table.num_rows == 100 and table.schema.field("id").type == pa.string()
    assert {r["author_username"] for r in rows} == {"PhillyNEFL"}


def test_a_row_has_exactly_the_schema_columns_and_an_author_row_the_users_columns():
    record = _record("tweets/009.json")
    assert list(flatten_tweet(record)) == schema.TWEETS.names
    users = flatten_users(record)
    assert users and all(list(u) == schema.USERS.names for u in users)


def test_the_places_name_country_and_bounding_box_are_columns():
    row = _row("tweets/009.json")
    assert (row["place_name"], row["place_country"], row["place_type"]) == ("Berlin", "Germany", "city")
    assert row["place_bbox"] == [13.088304, 52.338079, 13.760909, 52.675323]


def test_shape_problems_are_rejected_with_a_reason():
    record = _record("tweets/015.json")
    record["tweet"]["public_metrics"] = {"like_count": "many"}
    with pytest.raises(Rejected, match=r"public_metrics\.like_count is not an integer"):
        flatten_tweet(record)
    with pytest.raises(Rejected, match="missing tweet object"):
        flatten_tweet({"v": 1})
    with pytest.raises(Rejected, match="not a JSON object"):
        flatten_tweet([1, 2])


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("tweet", "public_metrics", "like_count"), "--5", "public_metrics.like_count is not an integer"),
        (("tweet", "public_metrics", "like_count"), "\u00b2", "public_metrics.like_count is not an integer"),
        (("tweet", "id"), "\u00b2", "tweet.id is not a numeric id string"),
        (("tweet", "created_at"), "0001-01-01T00:00:00+05:00", "tweet.created_at is not an ISO timestamp"),
        (("includes", "users", 0, "username"), ["x"], "author.username is not a string"),
        (("tweet", "text"), "\ud800", "tweet.text is not valid Unicode"),
    ],
)
def test_hostile_values_are_rejections_not_crashes(path, value, reason):
    record = _record("tweets/009.json")
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(Rejected) as rejected:
        flatten_tweet(record)
        flatten_users(record)
    assert str(rejected.value) == reason


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
BASE = _record("tweets/009.json")
PATHS = [
    ("tweet",),
    ("tweet", "id"),
    ("tweet", "text"),
    ("tweet", "entities"),
    ("tweet", "entities", "mentions"),
    ("tweet", "geo"),
    ("tweet", "referenced_tweets"),
    ("tweet", "public_metrics"),
    ("includes",),
    ("includes", "users"),
    ("includes", "places"),
    ("collected_at",),
    ("account",),
    ("matching_rules",),
    ("tweet", "withheld"),
    ("tweet", "attachments"),
    ("tweet", "created_at"),
    ("tweet", "author_id"),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON, st.tuples(st.sampled_from(PATHS), JSON)))
def test_any_json_yields_a_row_or_a_rejection_never_a_crash(value):
    if isinstance(value, tuple):
        path, replacement = value
        record = json.loads(json.dumps(BASE))
        target = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = replacement
    else:
        record = value
    try:
        row = flatten_tweet(record)
        users = flatten_users(record)
    except Rejected:
        return
    assert list(row) == schema.TWEETS.names
    pa.RecordBatch.from_pylist([row], schema=schema.TWEETS)
    pa.RecordBatch.from_pylist(users, schema=schema.USERS)
