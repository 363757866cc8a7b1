-- Enriched location events, one row per event_id whatever the replays upstream.
create table locations (
  event_id text primary key,
  user_id text not null,
  event_time timestamptz not null,
  lat double precision not null,
  long double precision not null,
  timezone text not null,
  utc_offset_minutes smallint not null,
  -- Wall-clock time where the event happened; event_time + utc_offset_minutes gives it back.
  local_time timestamp not null,
  ingested_at timestamptz not null,
  persisted_at timestamptz not null default clock_timestamp(),
  source_partition integer not null,
  source_offset bigint not null
);

-- "Events of a user by time".
create index locations_user_time on locations (user_id, event_time);

-- The next offset to write, per consumer group and partition. Updated in the same transaction as the rows it
-- covers, so PostgreSQL, not Kafka, says what has been persisted.
create table consumer_offsets (
  group_id text not null,
  topic text not null,
  partition integer not null,
  next_offset bigint not null,
  updated_at timestamptz not null default now(),
  primary key (group_id, topic, partition)
);
