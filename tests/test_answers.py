"""API answers are checked before use: wrongly shaped parts are rejected with a reason, never a crash."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.server import mangle
from streamer.answers import BadShape, timeline_page, tweet_problem, user_lookup
from tweetlake.landing import encode_line, select_includes, tweet_record

DATA = Path(__file__).parent / "data" / "xapi"
PAGE = json.loads((DATA / "users_id_tweets" / "005.json").read_text())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
# objects shaped like answers, with any JSON in any place the daemon looks
answer_like = st.fixed_dictionaries(
    {},
    optional={
        "data": json_values
        | st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": json_values | st.from_regex(r"[0-9]{1,19}", fullmatch=True),
                    "referenced_tweets": json_values,
                    "entities": json_values | st.fixed_dictionaries({}, optional={"mentions": json_values}),
                    "attachments": json_values,
                    "author_id": json_values,
                    "geo": json_values,
                },
            ),
            max_size=3,
        ),
        "includes": json_values | st.fixed_dictionaries({}, optional={"users": json_values, "tweets": json_values}),
        "errors": json_values,
        "meta": json_values | st.fixed_dictionaries({}, optional={"next_token": json_values}),
    },
)


def test_a_recorded_timeline_page_passes_whole():
    page = timeline_page(PAGE)
    assert len(page.tweets) == 100 and page.rejected == []
    assert page.next_token == PAGE["meta"]["next_token"] and len(page.errors) == len(PAGE["errors"])
    assert {k: len(v) for k, v in page.includes.items()} == {k: len(v) for k, v in PAGE["includes"].items()}


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ("bad_tweet_id", "tweet.id is not a numeric id string"),
        ("refs_string", "tweet.referenced_tweets is not a list of {type, id} objects"),
        ("mentions_string", "tweet.entities.mentions is not a list of objects"),
    ],
)
def test_a_wrongly_shaped_tweet_is_rejected_alone(shape, reason):
    page = timeline_page(mangle(PAGE, shape))
    assert [r.reason for r in page.rejected] == [reason]
    assert len(page.tweets) == 99


@pytest.mark.parametrize(
    ("shape", "reason"),
    [("meta_list", "meta is not an object"), ("data_string", "data is not a list"), ("top_list", "not a JSON object")],
)
def test_an_answer_with_wrong_containers_is_a_bad_shape(shape, reason):
    with pytest.raises(BadShape, match=reason):
        timeline_page(mangle(PAGE, shape))


def test_error_entries_that_are_not_objects_are_kept_wrapped():
    page = timeline_page(mangle(PAGE, "errors_strings"))
    assert page.errors == [
        {"title": "malformed error entry", "value": "something went wrong"},
        {"title": "malformed error entry", "value": 42},
    ]
    assert len(page.tweets) == 100


def test_a_user_whose_id_is_a_list_is_rejected_and_the_others_resolve():
    body = {"data": [{"id": ["1"], "username": "a"}, {"id": "2", "username": "b"}, "c"]}
    lookup = user_lookup(body)
    assert [u["username"] for u in lookup.users] == ["b"]
    assert [r.reason for r in lookup.rejected] == ["user.id is not a numeric id string", "user is not an object"]


@pytest.mark.parametrize("tweet_id", ["\u00b2", "١٢٣", "12a", "", "-5", " 5"])
def test_only_ascii_digit_strings_are_tweet_ids(tweet_id):
    assert tweet_problem({"id": tweet_id}) == "tweet.id is not a numeric id string"


@settings(max_examples=400, deadline=None)
@given(answer_like | json_values)
def test_any_json_answer_is_checked_without_crashing_and_what_passes_can_be_landed(answer):
    try:
        page = timeline_page(answer)
    except BadShape:
        return
    for tweet in page.tweets:
        record = tweet_record(
            tweet,
            page.includes,
            collected_at=datetime(2026, 11, 25, tzinfo=UTC),
            collected_via="poll:users_tweets",
            account={"id": "1", "username": "u"},
        )
        assert int(record["tweet"]["id"]) >= 0
        encode_line(record)


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
def test_select_includes_never_raises(tweet, includes):
    select_includes(tweet if isinstance(tweet, dict) else {"x": tweet}, includes if isinstance(includes, dict) else {})


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_user_lookup_is_checked_without_crashing(answer):
    with contextlib.suppress(BadShape):
        user_lookup(answer)


@settings(max_examples=300, deadline=None)
@given(answer_like | json_values, st.one_of(st.none(), json_values))
def test_any_json_stream_line_is_checked_without_crashing(answer, rules):
    from streamer.answers import stream_message

    if isinstance(answer, dict) and rules is not None:
        answer = {**answer, "matching_rules": rules}
    with contextlib.suppress(BadShape):
        stream_message(answer)


@settings(max_examples=200, deadline=None)
@given(json_values | st.fixed_dictionaries({}, optional={"data": json_values, "meta": json_values}))
def test_any_json_rules_or_usage_answer_is_checked_without_crashing(answer):
    from streamer.answers import stream_rules, x_usage

    with contextlib.suppress(BadShape):
        stream_rules(answer)
    with contextlib.suppress(BadShape):
        x_usage(answer)
