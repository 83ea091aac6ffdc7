"""The DuckDB baseline: the tables tweetlake makes, from the same landing files, in plain DuckDB SQL.

    python bench/duckdb_baseline.py LANDING_TWEETS_HOUR_DIR OUT_DIR

What a data engineer would write instead of tweetlake: ``read_json`` over the hour's gzip files
with an explicit column spec (DuckDB's typed reading; no per-field validation, no rejections),
every tweet column of schema.TWEETS with the author and the referenced tweets' authors looked up
in the includes, the users table (latest snapshot per author), dedupe by id, zstd Parquet, and
CSV with lists as JSON arrays. Prints the seconds of each step as JSON.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import duckdb

LIST = "[]"
USER = (
    "STRUCT(id VARCHAR, username VARCHAR, name VARCHAR, created_at TIMESTAMPTZ, description VARCHAR,"
    " location VARCHAR, url VARCHAR, profile_image_url VARCHAR, pinned_tweet_id VARCHAR, protected BOOLEAN,"
    " verified BOOLEAN, verified_type VARCHAR, public_metrics STRUCT(followers_count BIGINT, following_count BIGINT,"
    " tweet_count BIGINT, listed_count BIGINT, like_count BIGINT), withheld STRUCT(country_codes VARCHAR[],"
    " scope VARCHAR, copyright BOOLEAN), entities STRUCT(url STRUCT(urls STRUCT(expanded_url VARCHAR)[]),"
    " description STRUCT(hashtags STRUCT(tag VARCHAR)[], mentions STRUCT(username VARCHAR)[],"
    " urls STRUCT(url VARCHAR, expanded_url VARCHAR)[])))"
)
TWEET = (
    "STRUCT(id VARCHAR, text VARCHAR, created_at TIMESTAMPTZ, author_id VARCHAR, lang VARCHAR,"
    " conversation_id VARCHAR, in_reply_to_user_id VARCHAR, source VARCHAR, reply_settings VARCHAR,"
    " possibly_sensitive BOOLEAN, public_metrics STRUCT(retweet_count BIGINT, reply_count BIGINT,"
    " like_count BIGINT, quote_count BIGINT, bookmark_count BIGINT, impression_count BIGINT),"
    " entities STRUCT(hashtags STRUCT(tag VARCHAR)[], cashtags STRUCT(tag VARCHAR)[],"
    " mentions STRUCT(username VARCHAR)[], urls STRUCT(url VARCHAR, expanded_url VARCHAR)[], annotations JSON),"
    " context_annotations JSON, attachments STRUCT(media_keys VARCHAR[], poll_ids VARCHAR[]),"
    " geo STRUCT(place_id VARCHAR, coordinates JSON), withheld STRUCT(country_codes VARCHAR[], copyright BOOLEAN,"
    " scope VARCHAR), edit_history_tweet_ids VARCHAR[], edit_controls STRUCT(edits_remaining BIGINT,"
    " is_edit_eligible BOOLEAN, editable_until TIMESTAMPTZ), note_tweet STRUCT(text VARCHAR),"
    " referenced_tweets STRUCT(type VARCHAR, id VARCHAR)[])"
)
INCLUDES = (
    f"STRUCT(users {USER}[], tweets STRUCT(id VARCHAR, author_id VARCHAR)[],"
    " media STRUCT(media_key VARCHAR, type VARCHAR, url VARCHAR, preview_image_url VARCHAR)[],"
    " places STRUCT(id VARCHAR, full_name VARCHAR, country_code VARCHAR, place_type VARCHAR, name VARCHAR,"
    " country VARCHAR, geo STRUCT(bbox DOUBLE[]))[], polls STRUCT(id VARCHAR, options JSON, voting_status VARCHAR,"
    " end_datetime TIMESTAMPTZ, duration_minutes BIGINT)[])"
)
COLUMNS = {
    "v": "BIGINT",
    "tweet": TWEET,
    "includes": INCLUDES,
    "collected_at": "TIMESTAMPTZ",
    "collected_via": "VARCHAR",
    "account": "STRUCT(username VARCHAR)",
    "matching_rules": "STRUCT(id VARCHAR, tag VARCHAR)[]",
}
TWEETS = """
create table tweets as
with x as (
    select tweet as t, includes as i, collected_at, collected_via, account, matching_rules,
        list_filter(tweet.referenced_tweets, lambda r: r.type = 'retweeted')[1].id as rt,
        list_filter(tweet.referenced_tweets, lambda r: r.type = 'quoted')[1].id as qt,
        list_filter(includes.polls, lambda p: p.id = tweet.attachments.poll_ids[1])[-1] as poll,
        list_filter(includes.places, lambda p: p.id = tweet.geo.place_id)[-1] as place
    from raw
), y as (
    select *,
        list_filter(i.tweets, lambda x: x.id = rt)[-1].author_id as rt_user,
        list_filter(i.tweets, lambda x: x.id = qt)[-1].author_id as qt_user
    from x
)
select t.id, t.created_at, t.author_id,
    list_filter(i.users, lambda u: u.id = t.author_id)[-1].username as author_username,
    list_filter(i.users, lambda u: u.id = t.author_id)[-1].name as author_name,
    t.text, t.note_tweet.text as note_tweet_text, t.lang, t.conversation_id, t.in_reply_to_user_id,
    list_filter(i.users, lambda u: u.id = t.in_reply_to_user_id)[-1].username as in_reply_to_username,
    list_filter(t.referenced_tweets, lambda r: r.type = 'replied_to')[1].id as replied_to_id,
    rt as retweeted_id, rt_user as retweeted_user_id,
    list_filter(i.users, lambda u: u.id = rt_user)[-1].username as retweeted_username,
    qt as quoted_id, qt_user as quoted_user_id,
    list_filter(i.users, lambda u: u.id = qt_user)[-1].username as quoted_username,
    t.public_metrics.retweet_count, t.public_metrics.reply_count, t.public_metrics.like_count,
    t.public_metrics.quote_count, t.public_metrics.bookmark_count, t.public_metrics.impression_count,
    list_transform(t.entities.hashtags, lambda h: h.tag) as hashtags,
    list_transform(t.entities.cashtags, lambda h: h.tag) as cashtags,
    list_transform(t.entities.mentions, lambda h: h.username) as mentions,
    list_transform(t.entities.urls, lambda h: coalesce(h.expanded_url, h.url)) as urls,
    t.entities.annotations::varchar as annotations, t.context_annotations::varchar as context_annotations,
    t.attachments.media_keys,
    list_transform(t.attachments.media_keys, lambda k: list_filter(i.media, lambda m: m.media_key = k)[-1].type)
        as media_types,
    list_transform(t.attachments.media_keys, lambda k: coalesce(
        list_filter(i.media, lambda m: m.media_key = k)[-1].url,
        list_filter(i.media, lambda m: m.media_key = k)[-1].preview_image_url)) as media_urls,
    t.attachments.poll_ids[1] as poll_id, poll.options::varchar as poll_options,
    poll.voting_status as poll_voting_status, poll.end_datetime as poll_end_datetime,
    t.geo.place_id, place.full_name as place_full_name, place.country_code as place_country_code,
    place.place_type, t.geo.coordinates::varchar as geo_coordinates, t.possibly_sensitive, t.source,
    t.reply_settings, t.withheld.country_codes as withheld_in, t.withheld.copyright as withheld_copyright,
    t.withheld.scope as withheld_scope, t.edit_history_tweet_ids, t.edit_controls.edits_remaining,
    t.edit_controls.is_edit_eligible, t.edit_controls.editable_until,
    list_transform(matching_rules, lambda r: r.id || coalesce(':' || r.tag, '')) as matching_rules,
    collected_at, collected_via, account.username as collected_for,
    poll.duration_minutes as poll_duration_minutes, place.name as place_name, place.country as place_country,
    place.geo.bbox as place_bbox
from y
qualify row_number() over (partition by t.id order by collected_at) = 1
"""
USERS = """
create table users as
select u.id, u.username, u.name, u.created_at, u.description, u.location, u.url, u.profile_image_url,
    u.pinned_tweet_id, u.protected, u.verified, u.verified_type, u.public_metrics.followers_count,
    u.public_metrics.following_count, u.public_metrics.tweet_count, u.public_metrics.listed_count,
    u.public_metrics.like_count, u.withheld.country_codes as withheld_in, collected_at,
    u.entities.url.urls[1].expanded_url as url_expanded,
    list_transform(u.entities.description.hashtags, lambda h: h.tag) as description_hashtags,
    list_transform(u.entities.description.mentions, lambda h: h.username) as description_mentions,
    list_transform(u.entities.description.urls, lambda h: coalesce(h.expanded_url, h.url)) as description_urls,
    u.withheld.scope as withheld_scope, u.withheld.copyright as withheld_copyright
from (
    select unnest(list_filter(includes.users, lambda u: u.id = tweet.author_id
        or list_contains(list_transform(includes.tweets, lambda x: x.author_id), u.id))) as u, collected_at
    from raw
)
qualify row_number() over (partition by u.id order by collected_at desc) = 1
"""


def csv_select(table: str, lists: list[str]) -> str:
    replaced = ", ".join(f"to_json({name})::varchar as {name}" for name in lists)
    return f"select * replace ({replaced}) from {table}"


def main(source: str, out: str) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    Path(out).mkdir(parents=True)
    con = duckdb.connect()
    con.execute("set enable_progress_bar = false; set timezone = 'UTC'")
    steps: dict[str, float] = {}
    started = time.perf_counter()

    def step(name: str, sql: str) -> None:
        begin = time.perf_counter()
        con.execute(sql)
        steps[name] = round(time.perf_counter() - begin, 3)

    step(
        "read",
        f"create table raw as select * from read_json('{source}/*.gz', format='newline_delimited', records=true,"
        f" maximum_object_size=16777216, columns={COLUMNS})",
    )
    step("tweets", TWEETS)
    step("users", USERS)
    step(
        "parquet",
        f"copy tweets to '{out}/tweets.parquet' (format parquet, compression zstd);"
        f" copy users to '{out}/users.parquet' (format parquet, compression zstd)",
    )
    tweet_lists = [
        "hashtags",
        "cashtags",
        "mentions",
        "urls",
        "media_keys",
        "media_types",
        "media_urls",
        "withheld_in",
        "edit_history_tweet_ids",
        "matching_rules",
        "place_bbox",
    ]
    user_lists = ["withheld_in", "description_hashtags", "description_mentions", "description_urls"]
    step(
        "csv",
        f"copy ({csv_select('tweets', tweet_lists)}) to '{out}/tweets.csv' (format csv, header);"
        f" copy ({csv_select('users', user_lists)}) to '{out}/users.csv' (format csv, header)",
    )
    steps["total"] = round(time.perf_counter() - started, 3)
    steps["rows"] = con.execute("select count(*) from tweets").fetchone()[0]
    return steps


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
