"""The tables' explicit Arrow schemas. docs/schema.md documents every column.

Ids are strings everywhere: 64-bit ids lose precision in JavaScript and Excel. Lists stay lists in
Parquet and Iceberg; in CSV they are JSON arrays (``compactor.csvfiles``). Timestamps are
microseconds in UTC, the precision Iceberg stores. Columns are only ever appended: the Iceberg
tables take a new column by schema evolution (a new field id; older rows read as null), and CSV
readers find every earlier column where it was.
"""

from __future__ import annotations

import pyarrow as pa

_str = pa.string()
_int = pa.int64()
_bool = pa.bool_()
_ts = pa.timestamp("us", tz="UTC")
_list = pa.list_(pa.string())
_floats = pa.list_(pa.float64())
TWEETS = pa.schema(
    [
        ("id", _str),
        ("created_at", _ts),
        ("author_id", _str),
        ("author_username", _str),
        ("author_name", _str),
        ("text", _str),
        ("note_tweet_text", _str),
        ("lang", _str),
        ("conversation_id", _str),
        ("in_reply_to_user_id", _str),
        ("in_reply_to_username", _str),
        ("replied_to_id", _str),
        ("retweeted_id", _str),
        ("retweeted_user_id", _str),
        ("retweeted_username", _str),
        ("quoted_id", _str),
        ("quoted_user_id", _str),
        ("quoted_username", _str),
        ("retweet_count", _int),
        ("reply_count", _int),
        ("like_count", _int),
        ("quote_count", _int),
        ("bookmark_count", _int),
        ("impression_count", _int),
        ("hashtags", _list),
        ("cashtags", _list),
        ("mentions", _list),
        ("urls", _list),
        ("annotations", _str),
        ("context_annotations", _str),
        ("media_keys", _list),
        ("media_types", _list),
        ("media_urls", _list),
        ("poll_id", _str),
        ("poll_options", _str),
        ("poll_voting_status", _str),
        ("poll_end_datetime", _ts),
        ("place_id", _str),
        ("place_full_name", _str),
        ("place_country_code", _str),
        ("place_type", _str),
        ("geo_coordinates", _str),
        ("possibly_sensitive", _bool),
        ("source", _str),
        ("reply_settings", _str),
        ("withheld_in", _list),
        ("withheld_copyright", _bool),
        ("withheld_scope", _str),
        ("edit_history_tweet_ids", _list),
        ("edits_remaining", _int),
        ("is_edit_eligible", _bool),
        ("editable_until", _ts),
        ("matching_rules", _list),
        ("collected_at", _ts),
        ("collected_via", _str),
        ("collected_for", _str),
        # added in schema version 2 (schema evolution)
        ("poll_duration_minutes", _int),
        ("place_name", _str),
        ("place_country", _str),
        ("place_bbox", _floats),
    ]
)

USERS = pa.schema(
    [
        ("id", _str),
        ("username", _str),
        ("name", _str),
        ("created_at", _ts),
        ("description", _str),
        ("location", _str),
        ("url", _str),
        ("profile_image_url", _str),
        ("pinned_tweet_id", _str),
        ("protected", _bool),
        ("verified", _bool),
        ("verified_type", _str),
        ("followers_count", _int),
        ("following_count", _int),
        ("tweet_count", _int),
        ("listed_count", _int),
        ("like_count", _int),
        ("withheld_in", _list),
        ("collected_at", _ts),
        # added in schema version 2 (schema evolution)
        ("url_expanded", _str),
        ("description_hashtags", _list),
        ("description_mentions", _list),
        ("description_urls", _list),
        ("withheld_scope", _str),
        ("withheld_copyright", _bool),
    ]
)
