"""Vectorized flattening: a chunk of landed lines -> tweet rows and author rows, in DuckDB.

``compactor.flatten`` is the reference; this module computes the same rows for whole chunks of
lines at DuckDB speed. Each line is parsed once into a struct whose leaves stay raw JSON text, so
a value's JSON type is read off its first character and no value is ever converted by a lossy
cast. Every condition under which the reference would reject a line, or would read a value in a
way the SQL does not reproduce exactly, marks the line ``ok = false``: those lines (rare in real
data) go through the reference, which gives the exact row or rejection reason. Authors are
checked and flattened once per distinct profile object (``_Authors``), not inside every tweet
that carries one: ~1/3 of the query's time when it was per tweet. A differential test holds the
two to the same output on generated and recorded records.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from compactor import schema

J = "JSON"
TAGS = [{"tag": J}]
MENTIONS = [{"username": J}]
URLS = [{"url": J, "expanded_url": J}]
SCALARS = [J]
STRUCTURE = {
    "v": J,
    "tweet": {
        "id": J,
        "text": J,
        "created_at": J,
        "author_id": J,
        "lang": J,
        "conversation_id": J,
        "in_reply_to_user_id": J,
        "source": J,
        "reply_settings": J,
        "possibly_sensitive": J,
        "public_metrics": dict.fromkeys(
            ("retweet_count", "reply_count", "like_count", "quote_count", "bookmark_count", "impression_count"), J
        ),
        "entities": {"hashtags": TAGS, "cashtags": TAGS, "mentions": MENTIONS, "urls": URLS, "annotations": J},
        "context_annotations": J,
        "attachments": {"media_keys": SCALARS, "poll_ids": SCALARS},
        "geo": {"place_id": J, "coordinates": J},
        "withheld": {"country_codes": SCALARS, "copyright": J, "scope": J},
        "edit_history_tweet_ids": SCALARS,
        "edit_controls": {"edits_remaining": J, "is_edit_eligible": J, "editable_until": J},
        "note_tweet": {"text": J},
        "referenced_tweets": [{"type": J, "id": J}],
    },
    "includes": {
        "users": [
            {
                **dict.fromkeys(
                    (
                        "id",
                        "username",
                        "name",
                        "created_at",
                        "description",
                        "location",
                        "url",
                        "profile_image_url",
                        "pinned_tweet_id",
                        "protected",
                        "verified",
                        "verified_type",
                    ),
                    J,
                ),
                # read for authors only: parsed from their JSON text after the authors are known
                "public_metrics": J,
                "withheld": J,
                "entities": J,
            }
        ],
        "tweets": [{"id": J, "author_id": J}],
        "media": [{"media_key": J, "type": J, "url": J, "preview_image_url": J}],
        "places": [{"id": J, "full_name": J, "country_code": J, "place_type": J, "name": J, "country": J, "geo": J}],
        "polls": [{"id": J, "options": J, "voting_status": J, "end_datetime": J, "duration_minutes": J}],
    },
    "collected_at": J,
    "collected_via": J,
    "account": {"username": J},
    "matching_rules": [{"id": J, "tag": J}],
}
# A struct or list in STRUCTURE reads a wrongly typed value as NULL or as a struct of NULLs: the
# JSON type of each one is read off the line itself (one pass for all of these paths).
OBJECTS = [
    "$",
    "$.tweet",
    "$.includes",
    "$.tweet.public_metrics",
    "$.tweet.entities",
    "$.tweet.attachments",
    "$.tweet.geo",
    "$.tweet.withheld",
    "$.tweet.edit_controls",
    "$.tweet.note_tweet",
    "$.account",
]
ARRAYS = [
    "$.includes.users",
    "$.includes.tweets",
    "$.includes.media",
    "$.includes.places",
    "$.includes.polls",
    "$.tweet.entities.hashtags",
    "$.tweet.entities.cashtags",
    "$.tweet.entities.mentions",
    "$.tweet.entities.urls",
    "$.tweet.attachments.media_keys",
    "$.tweet.attachments.poll_ids",
    "$.tweet.withheld.country_codes",
    "$.tweet.edit_history_tweet_ids",
    "$.tweet.referenced_tweets",
    "$.matching_rules",
]
CONTAINERS = OBJECTS + ARRAYS

_TIME = (
    r'"(19|20)[0-9]{2}-[01][0-9]-[0-3][0-9]T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?'
    r'(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"'
)
# Number spellings where Python's float repr and DuckDB's JSON writer may differ: the reference decides.
_RISKY_JSON = r"[0-9.][eE]|[0-9]{16,}\.|\.[0-9]{16,}|\.0000|\\u"

MACROS = rf"""
create or replace macro ok_str(x) as x is null or starts_with(x::varchar, '"');
create or replace macro str_of(x) as case
    when contains(x::varchar, '\') then json_extract_string(x, '$') else (x::varchar)[2:-2] end;
create or replace macro ok_id(x) as x is null or regexp_full_match(x::varchar, '"[0-9]+"|[0-9]+');
create or replace macro id_of(x) as case when starts_with(x::varchar, '"') then (x::varchar)[2:-2] else x::varchar end;
create or replace macro int_of(x) as try_cast(trim(x::varchar, '" ') as bigint);
create or replace macro ok_int(x) as x is null
    or (regexp_full_match(x::varchar, '" *-?[0-9]+ *"|-?[0-9]+') and int_of(x) is not null);
create or replace macro ok_bool(x) as x is null or x::varchar in ('true', 'false');
create or replace macro bool_of(x) as x::varchar = 'true';
create or replace macro time_of(x) as try_cast((x::varchar)[2:-2] as timestamptz);
create or replace macro ok_time(x) as x is null
    or (regexp_full_match(x::varchar, '{_TIME}') and time_of(x) is not null);
create or replace macro ok_json(x) as x is null or not regexp_matches(x::varchar, '{_RISKY_JSON}');
create or replace macro json_of(x) as case when x::varchar in ('[]', '{{}}') then null else x::varchar end;
create or replace macro ok_obj(x) as x is null or starts_with(x::varchar, '{{');
create or replace macro ok_arr(x) as x is null or starts_with(x::varchar, '[');
create or replace macro ok_arrays(types) as coalesce(list_bool_and(list_transform(types,
    lambda x: coalesce(x, 'NULL') in ('NULL', 'ARRAY'))), true);
create or replace macro ok_scalar(x) as x is not null
    and (starts_with(x::varchar, '"') or regexp_full_match(x::varchar, '-?[0-9]+'));
create or replace macro scalar_of(x) as case when starts_with(x::varchar, '"') then str_of(x) else x::varchar end;
create or replace macro scalars(xs) as coalesce(list_transform(xs, lambda e: scalar_of(e)), []);
create or replace macro ok_scalars(xs) as all_of(xs, lambda e: ok_scalar(e));
create or replace macro url_of(e) as case
    when coalesce(str_of(e.expanded_url), '') <> '' then str_of(e.expanded_url)
    else coalesce(str_of(e.url), 'None') end;
create or replace macro ok_urls(xs) as all_of(xs, lambda e: e is not null
    and (e.expanded_url is not null or e.url is not null) and ok_str(e.expanded_url) and ok_str(e.url));
create or replace macro last_of(xs, keys, key) as case
    when key is null then null else xs[len(keys) + 1 - list_position(list_reverse(keys), key)] end;
create or replace macro ok_keyed(xs, key) as all_of(xs,
    lambda e: e is not null and ok_str(e[key]) and e[key] is not null);
"""


def _expand_all_of(sql: str) -> str:
    """``all_of(xs, lambda v: cond)``: true when ``cond`` holds for every element (NULL counts as false).

    Written out in place, because DuckDB 1.5 cannot take a lambda as a macro argument.
    """
    marker = "all_of("
    while (start := sql.find(marker)) >= 0:
        depth, index, comma = 1, start + len(marker), -1
        while depth:
            char = sql[index]
            if char in "([{":
                depth += 1
            elif char in ")]}":
                depth -= 1
            elif char == "," and depth == 1 and comma < 0:
                comma = index
            elif char == "'":
                index = sql.index("'", index + 1)
            index += 1
        items, function = sql[start + len(marker) : comma], sql[comma + 1 : index - 1].strip()
        head, _, condition = function.partition(":")
        expanded = f"coalesce(list_bool_and(list_transform({items}, {head}: coalesce({condition}, false))), true)"
        sql = sql[:start] + expanded + sql[index:]
    return sql


def _structure(value: object) -> str:
    return "'" + json.dumps(value, separators=(",", ":")).replace("'", "''") + "'"


_USER_ENTITIES = {"url": {"urls": SCALARS}, "description": {"hashtags": TAGS, "mentions": MENTIONS, "urls": URLS}}
_USER_ENTITY_CONTAINERS = [  # objects, then arrays
    "$.url",
    "$.description",
    "$.url.urls",
    "$.description.hashtags",
    "$.description.mentions",
    "$.description.urls",
]
_AUTHOR_PARTS = rf"""{{
    'u': u,
    'pm': json_transform(u.public_metrics, {
    _structure(dict.fromkeys(("followers_count", "following_count", "tweet_count", "listed_count", "like_count"), J))
}),
    'wh': json_transform(u.withheld, {_structure({"country_codes": SCALARS, "scope": J, "copyright": J})}),
    'wh_ty': json_type(u.withheld, '$.country_codes'),
    'ent': json_transform(u.entities, {_structure(_USER_ENTITIES)}),
    'ent_ty': json_type(u.entities, {_USER_ENTITY_CONTAINERS})
}}"""
_AUTHOR_OK = """
    regexp_full_match(a.u.id::varchar, '"[0-9]+"') and ok_str(a.u.username) and ok_str(a.u.name)
    and ok_time(a.u.created_at) and ok_str(a.u.description) and ok_str(a.u.location) and ok_str(a.u.url)
    and ok_str(a.u.profile_image_url) and ok_id(a.u.pinned_tweet_id) and ok_bool(a.u.protected)
    and ok_bool(a.u.verified) and ok_str(a.u.verified_type)
    and ok_obj(a.u.public_metrics) and ok_int(a.pm.followers_count) and ok_int(a.pm.following_count)
    and ok_int(a.pm.tweet_count) and ok_int(a.pm.listed_count) and ok_int(a.pm.like_count)
    and ok_obj(a.u.withheld) and coalesce(a.wh_ty, 'NULL') in ('NULL', 'ARRAY') and ok_scalars(a.wh.country_codes)
    and ok_str(a.wh.scope) and ok_bool(a.wh.copyright)
    and ok_obj(a.u.entities) and coalesce(a.ent_ty[1], 'NULL') in ('NULL', 'OBJECT')
    and coalesce(a.ent_ty[2], 'NULL') in ('NULL', 'OBJECT') and ok_arrays(a.ent_ty[3:6])
    and all_of(a.ent.url.urls, lambda x: x is not null and ok_obj(x))
    and ok_str(json_extract(a.ent.url.urls[1], '$.expanded_url'))
    and ok_keyed(a.ent.description.hashtags, 'tag') and ok_keyed(a.ent.description.mentions, 'username')
    and ok_urls(a.ent.description.urls)
"""
_AUTHOR_ROW = """{
    'id': id_of(a.u.id),
    'username': str_of(a.u.username),
    'name': str_of(a.u.name),
    'created_at': time_of(a.u.created_at),
    'description': str_of(a.u.description),
    'location': str_of(a.u.location),
    'url': str_of(a.u.url),
    'profile_image_url': str_of(a.u.profile_image_url),
    'pinned_tweet_id': id_of(a.u.pinned_tweet_id),
    'protected': bool_of(a.u.protected),
    'verified': bool_of(a.u.verified),
    'verified_type': str_of(a.u.verified_type),
    'followers_count': int_of(a.pm.followers_count),
    'following_count': int_of(a.pm.following_count),
    'tweet_count': int_of(a.pm.tweet_count),
    'listed_count': int_of(a.pm.listed_count),
    'like_count': int_of(a.pm.like_count),
    'withheld_in': scalars(a.wh.country_codes),
    'url_expanded': str_of(json_extract(a.ent.url.urls[1], '$.expanded_url')),
    'description_hashtags': coalesce(list_transform(a.ent.description.hashtags, lambda e: str_of(e.tag)), []),
    'description_mentions': coalesce(list_transform(a.ent.description.mentions, lambda e: str_of(e.username)), []),
    'description_urls': coalesce(list_transform(a.ent.description.urls, lambda e: url_of(e)), []),
    'withheld_scope': str_of(a.wh.scope),
    'withheld_copyright': bool_of(a.wh.copyright)
}"""

# An author is checked and flattened once per distinct object (``_Authors``), not once per tweet
# that carries it: the hour of a followed account repeats a few hundred authors in every answer.
# The key is the object's parsed values, exactly: a JSON text is never empty (so '' is an absent
# key: ``concat`` skips a NULL) and never holds a raw control character (so chr(31) separates
# values unambiguously). One ``concat``, not a chain of ``||``: the keys cost the query half as much.
_USER_FIELDS = list(STRUCTURE["includes"]["users"][0])  # type: ignore[index]
_AUTHOR_KEY = "concat(" + ", chr(31), ".join(f"u.{name}::varchar" for name in _USER_FIELDS) + ")"
_AUTHOR_OBJECT = ", ".join(f"'{name}': nullif(p[{at}], '')" for at, name in enumerate(_USER_FIELDS, 1))
# Prepared once per engine, run with the keys in a variable. DuckDB binds it again at every EXECUTE
# (~35 ms, its profiler's binding time, whatever the number of keys): a batch with new authors pays
# that once, where ``sql()`` over the plain SELECT with a parameter binds it twice (to describe it,
# then to run it). Measured and not better: the keys in a table, macros written out, fewer optimizers.
AUTHORS_SQL = f"""
prepare authors as
select coalesce({_AUTHOR_OK}, false) as ok, {_AUTHOR_ROW} as row
from (select {_AUTHOR_PARTS} as a from (select {{{_AUTHOR_OBJECT}}} as u from (
    select string_split(key, chr(31)) as p from (select unnest(getvariable('author_keys')::varchar[]) as key))))
"""

SQL = rf"""
with parsed as (
    select file, number, line,
        try(json_transform(text, {_structure(STRUCTURE)})) as r, try(json_type(text, {CONTAINERS})) as ty
    from (select file, number, line, try(decode(line)) as text from lines)
), parts as (
    select file, number, line, ty, r, r.tweet as t, r.includes as inc,
        r.tweet.public_metrics as pm, r.tweet.entities as ent,
        r.tweet.attachments as att, r.tweet.geo as geo, r.tweet.withheld as wh, r.tweet.edit_controls as ec,
        r.tweet.referenced_tweets as refs, r.matching_rules as rules,
        list_transform(r.includes.users, lambda u: id_of(u.id)) as user_ids,
        list_transform(r.includes.tweets, lambda x: id_of(x.id)) as tweet_ids,
        list_transform(r.includes.media, lambda m: str_of(m.media_key)) as media_ids,
        list_transform(r.includes.places, lambda p: str_of(p.id)) as place_ids,
        list_transform(r.includes.polls, lambda p: str_of(p.id)) as poll_ids_included
    from parsed
), looked as (
    select *,
        last_of(inc.users, user_ids, id_of(t.author_id)) as author,
        list_filter(refs, lambda e: str_of(e.type) = 'retweeted')[1].id as retweeted_id,
        list_filter(refs, lambda e: str_of(e.type) = 'quoted')[1].id as quoted_id,
        list_filter(refs, lambda e: str_of(e.type) = 'replied_to')[1].id as replied_to_id,
        scalars(att.media_keys) as media_keys,
        scalars(att.poll_ids) as poll_ids,
        last_of(inc.places, place_ids, str_of(geo.place_id)) as place,
        coalesce(list_transform(inc.tweets, lambda x: x.author_id::varchar), []) || [t.author_id::varchar] as author_ids
    from parts
), looked2 as (
    select *,
        last_of(inc.tweets, tweet_ids, id_of(retweeted_id)).author_id as retweeted_user_id,
        last_of(inc.tweets, tweet_ids, id_of(quoted_id)).author_id as quoted_user_id,
        last_of(inc.polls, poll_ids_included, poll_ids[1]) as poll,
        list_transform(
            list_filter(media_keys, lambda k: list_contains(media_ids, k)), lambda k: last_of(inc.media, media_ids, k)
        ) as media,
        json_transform(place.geo, '{{"bbox":"JSON"}}').bbox as bbox,
        list_filter(inc.users, lambda u: list_contains(author_ids, u.id::varchar)) as authors
    from looked
), checked as (
    select *,
        coalesce(
            list_bool_and(list_transform(ty[1:{len(OBJECTS)}], lambda x: coalesce(x, 'NULL') in ('NULL', 'OBJECT')))
            and ty[1] = 'OBJECT' and ty[2] = 'OBJECT'
            and ok_arrays(ty[{len(OBJECTS) + 1}:{len(CONTAINERS)}])
            and r.v::varchar = '1'
            and t.id is not null and ok_id(t.id)
            and starts_with(t.text::varchar, '"')
            and ok_time(t.created_at) and ok_id(t.author_id) and ok_str(t.lang) and ok_id(t.conversation_id)
            and ok_id(t.in_reply_to_user_id) and ok_str(t.source) and ok_str(t.reply_settings)
            and ok_bool(t.possibly_sensitive)
            and ok_int(pm.retweet_count) and ok_int(pm.reply_count) and ok_int(pm.like_count)
            and ok_int(pm.quote_count) and ok_int(pm.bookmark_count) and ok_int(pm.impression_count)
            and ok_keyed(ent.hashtags, 'tag') and ok_keyed(ent.cashtags, 'tag') and ok_keyed(ent.mentions, 'username')
            and ok_urls(ent.urls) and ok_json(ent.annotations) and ok_json(t.context_annotations)
            and ok_scalars(att.media_keys) and ok_scalars(att.poll_ids)
            and ok_str(geo.place_id) and ok_json(geo.coordinates)
            and ok_scalars(wh.country_codes) and ok_bool(wh.copyright) and ok_str(wh.scope)
            and ok_scalars(t.edit_history_tweet_ids)
            and ok_int(ec.edits_remaining) and ok_bool(ec.is_edit_eligible) and ok_time(ec.editable_until)
            and ok_str(t.note_tweet.text)
            and all_of(refs, lambda e: e is not null and starts_with(e.type::varchar, '"') and str_of(e.type) <> ''
                and e.id is not null and ok_id(e.id))
            and r.collected_at is not null and ok_time(r.collected_at) and ok_str(r.collected_via)
            and ok_str(r.account.username)
            and all_of(rules, lambda e: e is not null and ok_scalar(e.id) and ok_str(e.tag))
            and all_of(inc.users, lambda u: u is not null and regexp_full_match(u.id::varchar, '"[0-9]+"')
                and ok_str(u.username))
            and all_of(inc.tweets, lambda x: x is not null and regexp_full_match(x.id::varchar, '"[0-9]+"')
                and ok_id(x.author_id))
            and all_of(inc.media, lambda m: m is not null and starts_with(m.media_key::varchar, '"')
                and (m.type is null or ok_scalar(m.type)) and ok_str(m.url) and ok_str(m.preview_image_url))
            and all_of(inc.places, lambda p: p is not null and starts_with(p.id::varchar, '"'))
            and all_of(inc.polls, lambda p: p is not null and starts_with(p.id::varchar, '"'))
            and (place is null or (ok_str(place.full_name) and ok_str(place.country_code) and ok_str(place.place_type)
                and ok_str(place.name) and ok_str(place.country) and ok_obj(place.geo)
                and (bbox is null or (starts_with(bbox::varchar, '[') and all_of(json_transform(bbox, '["JSON"]'),
                    lambda e: regexp_full_match(e::varchar, '-?[0-9]+(\.[0-9]+)?')
                        and not regexp_matches(e::varchar, '{_RISKY_JSON}'))))))
            and (poll is null or (ok_json(poll.options) and ok_str(poll.voting_status) and ok_time(poll.end_datetime)
                and ok_int(poll.duration_minutes))),
        false) as ok
    from looked2
)
select
    file,
    number,
    ok,
    id_of(t.id) as id,
    time_of(t.created_at) as created_at,
    id_of(t.author_id) as author_id,
    str_of(author.username) as author_username,
    str_of(author.name) as author_name,
    str_of(t.text) as text,
    str_of(t.note_tweet.text) as note_tweet_text,
    str_of(t.lang) as lang,
    id_of(t.conversation_id) as conversation_id,
    id_of(t.in_reply_to_user_id) as in_reply_to_user_id,
    str_of(last_of(inc.users, user_ids, id_of(t.in_reply_to_user_id)).username) as in_reply_to_username,
    id_of(replied_to_id) as replied_to_id,
    id_of(retweeted_id) as retweeted_id,
    id_of(retweeted_user_id) as retweeted_user_id,
    str_of(last_of(inc.users, user_ids, id_of(retweeted_user_id)).username) as retweeted_username,
    id_of(quoted_id) as quoted_id,
    id_of(quoted_user_id) as quoted_user_id,
    str_of(last_of(inc.users, user_ids, id_of(quoted_user_id)).username) as quoted_username,
    int_of(pm.retweet_count) as retweet_count,
    int_of(pm.reply_count) as reply_count,
    int_of(pm.like_count) as like_count,
    int_of(pm.quote_count) as quote_count,
    int_of(pm.bookmark_count) as bookmark_count,
    int_of(pm.impression_count) as impression_count,
    coalesce(list_transform(ent.hashtags, lambda e: str_of(e.tag)), []) as hashtags,
    coalesce(list_transform(ent.cashtags, lambda e: str_of(e.tag)), []) as cashtags,
    coalesce(list_transform(ent.mentions, lambda e: str_of(e.username)), []) as mentions,
    coalesce(list_transform(ent.urls, lambda e: url_of(e)), []) as urls,
    json_of(ent.annotations) as annotations,
    json_of(t.context_annotations) as context_annotations,
    media_keys,
    list_transform(media, lambda m: coalesce(scalar_of(m.type), 'None')) as media_types,
    list_transform(media, lambda m: case
        when coalesce(str_of(m.url), '') <> '' then str_of(m.url)
        else coalesce(str_of(m.preview_image_url), '') end) as media_urls,
    poll_ids[1] as poll_id,
    json_of(poll.options) as poll_options,
    str_of(poll.voting_status) as poll_voting_status,
    time_of(poll.end_datetime) as poll_end_datetime,
    str_of(geo.place_id) as place_id,
    str_of(place.full_name) as place_full_name,
    str_of(place.country_code) as place_country_code,
    str_of(place.place_type) as place_type,
    json_of(geo.coordinates) as geo_coordinates,
    bool_of(t.possibly_sensitive) as possibly_sensitive,
    str_of(t.source) as source,
    str_of(t.reply_settings) as reply_settings,
    scalars(wh.country_codes) as withheld_in,
    bool_of(wh.copyright) as withheld_copyright,
    str_of(wh.scope) as withheld_scope,
    scalars(t.edit_history_tweet_ids) as edit_history_tweet_ids,
    int_of(ec.edits_remaining) as edits_remaining,
    bool_of(ec.is_edit_eligible) as is_edit_eligible,
    time_of(ec.editable_until) as editable_until,
    coalesce(list_transform(rules, lambda e: case
        when coalesce(str_of(e.tag), '') <> '' then scalar_of(e.id) || ':' || str_of(e.tag)
        else scalar_of(e.id) end), []) as matching_rules,
    time_of(r.collected_at) as collected_at,
    str_of(r.collected_via) as collected_via,
    str_of(r.account.username) as collected_for,
    int_of(poll.duration_minutes) as poll_duration_minutes,
    str_of(place.name) as place_name,
    str_of(place.country) as place_country,
    list_transform(json_transform(bbox, '["JSON"]'), lambda e: try_cast(e::varchar as double)) as place_bbox,
    list_transform(authors, lambda u: {_AUTHOR_KEY}) as author_keys
from checked
"""
MACROS = _expand_all_of(MACROS)
SQL = _expand_all_of(SQL)
AUTHORS_SQL = _expand_all_of(AUTHORS_SQL)
TWEET_COLUMNS = list(schema.TWEETS.names)
USER_COLUMNS = [name for name in schema.USERS.names if name != "collected_at"]


INPUT = pa.schema([("file", pa.int32()), ("number", pa.int64()), ("line", pa.large_binary())])
_AUTHOR_ROWS = pa.schema([schema.USERS.field(name) for name in USER_COLUMNS])
# Keys an engine keeps its authors' checks and rows for (a key is ~0.5 KB): a few thousand authors.
CACHE_BYTES = 2 << 20
# Bytes of lines a result batch holds at most, about: ordinary lines (up to 16 KB) go 2,048 to a
# batch, a file of multi-MB lines a few lines at a time (2,048 of them made 8 GB batches).
RESULT_BYTES = 32 << 20
RESULT_ROWS = 2048


@dataclass(frozen=True)
class Flattened:
    """A batch of lines flattened: rows of the lines the SQL vouches for, and the lines it does not.

    Rows carry the (file, line number) they came from; everything is in input order.
    """

    tweets: pa.RecordBatch  # schema.TWEETS
    tweet_files: np.ndarray
    tweet_numbers: np.ndarray
    users: pa.RecordBatch  # schema.USERS: the author rows of those lines
    user_files: np.ndarray
    user_numbers: np.ndarray
    slow: list[tuple[int, int, bytes]]  # (file, line number, line) of each line left to the reference

    def of_file(self, file: int) -> Flattened:
        """The part of this batch that came from ``file``."""
        t_lo, t_hi = np.searchsorted(self.tweet_files, [file, file + 1])
        u_lo, u_hi = np.searchsorted(self.user_files, [file, file + 1])
        return Flattened(
            self.tweets.slice(t_lo, t_hi - t_lo),
            self.tweet_files[t_lo:t_hi],
            self.tweet_numbers[t_lo:t_hi],
            self.users.slice(u_lo, u_hi - u_lo),
            self.user_files[u_lo:u_hi],
            self.user_numbers[u_lo:u_hi],
            [s for s in self.slow if s[0] == file],
        )

    @property
    def files(self) -> set[int]:
        return set(self.tweet_files.tolist()) | {s[0] for s in self.slow}


class Engine:
    """A DuckDB connection that flattens streams of lines; one per thread (DuckDB releases the GIL).

    A stream is one query per run of lines of one size class (``result_rows``): ordinary lines
    make one query, whatever the stream's length, so the statement's fixed cost (binding and
    planning a large expression tree, ~0.15 s) is paid once, and memory holds a few batches of
    about ``RESULT_BYTES`` each, not the stream.
    """

    def __init__(self) -> None:
        self._db = duckdb.connect(config={"threads": 1})
        self._db.execute("set timezone = 'UTC'")
        self._db.execute(MACROS)
        self._authors = _Authors(self._db.cursor())  # its own connection: the stream's query stays open

    def flatten(self, lines: Iterable[pa.RecordBatch]) -> Iterator[Flattened]:
        """Flatten a stream of ``INPUT`` batches (file, line number, line), batch by batch, in order.

        Lines (file, then line number) must increase through the stream, as a landed file reads.
        """
        for rows, run in itertools.groupby(lines, key=result_rows):
            yield from self._flatten_run(run, rows)

    def _flatten_run(self, lines: Iterator[pa.RecordBatch], batch_rows: int) -> Iterator[Flattened]:
        inputs = _Inputs(lines)
        self._db.register("lines", pa.RecordBatchReader.from_batches(INPUT, iter(inputs)))
        try:
            for batch in self._db.sql(SQL).to_arrow_reader(batch_rows):
                yield self._flattened(batch, inputs)
                inputs.release_through(_last_line(batch))
        finally:
            self._db.unregister("lines")

    def _flattened(self, batch: pa.RecordBatch, inputs: _Inputs) -> Flattened:
        """The query's rows joined with their authors; a line with an author the SQL cannot vouch
        for goes to the reference with the others."""
        keys = batch.column("author_keys")
        parents = pc.list_parent_indices(keys).to_numpy(zero_copy_only=False)
        ok = batch.column("ok").to_numpy(zero_copy_only=False).copy()
        taken = ok[parents]  # the authors of lines that failed already are not looked at
        parents = parents[taken]
        at = self._authors.find(pc.list_flatten(keys).filter(pa.array(taken)).to_pylist())
        ok[parents[~self._authors.ok[at]]] = False
        good = batch if ok.all() else batch.filter(pa.array(ok))
        slow_at = np.flatnonzero(~ok)
        slow = [
            (file, number, inputs.line(file, number))
            for file, number in zip(
                batch.column("file").take(slow_at).to_pylist(),
                batch.column("number").take(slow_at).to_pylist(),
                strict=True,
            )
        ]
        tweets = pa.RecordBatch.from_arrays(
            [good.column(name).cast(schema.TWEETS.field(name).type) for name in TWEET_COLUMNS], schema=schema.TWEETS
        )
        kept = ok[parents]
        rows = self._authors.rows.take(at[kept])
        line_of = (np.cumsum(ok) - 1)[parents[kept]]  # each author row's line among the good ones
        columns = {name: rows.column(name) for name in USER_COLUMNS}
        columns["collected_at"] = tweets.column("collected_at").take(line_of)
        users = pa.RecordBatch.from_arrays([columns[name] for name in schema.USERS.names], schema=schema.USERS)
        files = good.column("file").to_numpy(zero_copy_only=False)
        numbers = good.column("number").to_numpy(zero_copy_only=False)
        return Flattened(tweets, files, numbers, users, files[line_of], numbers[line_of], slow)


def result_rows(lines: pa.RecordBatch) -> int:
    """Rows per result batch for lines of this batch's mean size: ``RESULT_ROWS`` divided by a
    power of 4, so that a batch holds at most about ``RESULT_BYTES`` (coarse classes: a stream
    whose line sizes wander a little stays one query)."""
    mean = lines.column("line").nbytes / max(lines.num_rows, 1)
    rows = RESULT_ROWS
    while rows > 1 and rows * mean > RESULT_BYTES:
        rows //= 4
    return max(rows, 1)


def _last_line(batch: pa.RecordBatch) -> tuple[int, int]:
    """(file, line number) of a batch's last row: where it ends in the stream."""
    return batch.column("file")[-1].as_py(), batch.column("number")[-1].as_py()


class _Inputs:
    """The input batches handed to the query and not yet passed by its results: where the lines
    it leaves to the reference are taken from (the query itself never copies a line out)."""

    def __init__(self, batches: Iterable[pa.RecordBatch]) -> None:
        self._batches = batches
        self._held: deque[tuple[tuple[int, int], pa.RecordBatch]] = deque()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self._batches:
            if batch.num_rows:
                self._held.append((_last_line(batch), batch))
            yield batch

    def line(self, file: int, number: int) -> bytes:
        """A line of a batch not yet released (a linear search: such lines are rare)."""
        for last, batch in self._held:
            if (file, number) <= last:
                files = batch.column("file").to_numpy()
                numbers = batch.column("number").to_numpy()
                at = np.flatnonzero((files == file) & (numbers == number))
                if len(at):
                    return batch.column("line")[int(at[0])].as_py()
        raise LookupError(f"line {number} of file {file} is not held")

    def release_through(self, line: tuple[int, int]) -> None:
        """Results reached ``line`` (file, number): the batches that end there or before are done."""
        while self._held and self._held[0][0] <= line:
            self._held.popleft()


class _Authors:
    """Checks and rows of the author objects seen lately, by key (``_AUTHOR_KEY``): computed in one
    query per batch for the objects not seen yet, flat rather than inside each tweet's list.

    Bounded by the bytes of the keys held (``CACHE_BYTES``): full, it starts over. An hour of
    distinct authors (a filtered stream's) pays one query per batch, ~40 ms to bind and ~20 µs a
    new author: about 30 % of a worker's time there.
    """

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        self._db = db
        self._db.execute("set timezone = 'UTC'")
        self._db.execute(AUTHORS_SQL)
        self._clear()

    def _clear(self) -> None:
        self._index: dict[str, int] = {}
        self._bytes = 0
        self.ok = np.zeros(0, dtype=bool)
        # not from_pylist([]): that imports pandas (~0.3 s, holding the GIL) on a worker's start
        self.rows = pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in _AUTHOR_ROWS], schema=_AUTHOR_ROWS)

    def find(self, keys: list[str]) -> np.ndarray:
        """The position in ``ok`` and ``rows`` of each key's author, computed first where new."""
        distinct = list(dict.fromkeys(keys))
        new = [key for key in distinct if key not in self._index]
        if new:
            if self._bytes + sum(map(len, new)) > CACHE_BYTES:
                self._clear()
                new = distinct
            self._add(new)
        index = self._index
        return np.fromiter((index[key] for key in keys), dtype=np.int64, count=len(keys))

    def _add(self, keys: list[str]) -> None:
        self._db.execute("set variable author_keys = ?", [keys])
        found = self._db.sql("execute authors").to_arrow_table()
        row = found.column("row").combine_chunks()
        added = pa.RecordBatch.from_arrays(
            [row.field(name).cast(_AUTHOR_ROWS.field(name).type) for name in USER_COLUMNS], schema=_AUTHOR_ROWS
        )
        self._index.update(zip(keys, range(len(self._index), len(self._index) + len(keys)), strict=True))
        self._bytes += sum(map(len, keys))
        self.ok = np.concatenate([self.ok, found.column("ok").to_numpy()])
        self.rows = pa.concat_batches([self.rows, added])
