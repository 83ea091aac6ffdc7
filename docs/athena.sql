-- Athena / Glue tables over the tweetlake tables (replace s3://BUCKET/PREFIX).
-- Partition projection: no MSCK REPAIR or crawler needed as hours are added.

CREATE EXTERNAL TABLE IF NOT EXISTS tweetlake.tweets (
  id string, created_at timestamp, author_id string, author_username string, author_name string,
  text string, note_tweet_text string, lang string, conversation_id string,
  in_reply_to_user_id string, in_reply_to_username string, replied_to_id string,
  retweeted_id string, retweeted_user_id string, retweeted_username string,
  quoted_id string, quoted_user_id string, quoted_username string,
  retweet_count bigint, reply_count bigint, like_count bigint, quote_count bigint,
  bookmark_count bigint, impression_count bigint,
  hashtags array<string>, cashtags array<string>, mentions array<string>, urls array<string>,
  annotations string, context_annotations string,
  media_keys array<string>, media_types array<string>, media_urls array<string>,
  poll_id string, poll_options string, poll_voting_status string, poll_end_datetime timestamp,
  place_id string, place_full_name string, place_country_code string, place_type string,
  geo_coordinates string, possibly_sensitive boolean, source string, reply_settings string,
  withheld_in array<string>, withheld_copyright boolean, withheld_scope string,
  edit_history_tweet_ids array<string>, edits_remaining bigint, is_edit_eligible boolean,
  editable_until timestamp, matching_rules array<string>,
  collected_at timestamp, collected_via string, collected_for string
)
PARTITIONED BY (dt string, hour string)
STORED AS PARQUET
LOCATION 's3://BUCKET/PREFIX/tables/tweets/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date', 'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2026-01-01,NOW',
  'projection.hour.type' = 'integer', 'projection.hour.range' = '0,23', 'projection.hour.digits' = '2',
  'storage.location.template' = 's3://BUCKET/PREFIX/tables/tweets/dt=${dt}/hour=${hour}'
);

CREATE EXTERNAL TABLE IF NOT EXISTS tweetlake.users (
  id string, username string, name string, created_at timestamp, description string,
  location string, url string, profile_image_url string, pinned_tweet_id string,
  protected boolean, verified boolean, verified_type string, followers_count bigint,
  following_count bigint, tweet_count bigint, listed_count bigint, like_count bigint,
  withheld_in array<string>, collected_at timestamp
)
PARTITIONED BY (dt string, hour string)
STORED AS PARQUET
LOCATION 's3://BUCKET/PREFIX/tables/users/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date', 'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2026-01-01,NOW',
  'projection.hour.type' = 'integer', 'projection.hour.range' = '0,23', 'projection.hour.digits' = '2',
  'storage.location.template' = 's3://BUCKET/PREFIX/tables/users/dt=${dt}/hour=${hour}'
);
