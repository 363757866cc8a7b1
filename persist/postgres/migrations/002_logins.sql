-- One row per event-time window and input partition of logins.raw, as aggregate emits them. A replayed window
-- is emitted again with the same content and overwrites its row.
create table login_window_stats (
  window_start timestamptz not null,
  window_end timestamptz not null,
  partition integer not null,
  messages integer not null,
  late_messages integer not null,
  device_type_count jsonb not null,
  missing_field_count jsonb not null,
  total_messages bigint not null,
  total_device_type_count jsonb not null,
  total_missing_field_count jsonb not null,
  source_offset_end bigint not null,
  updated_at timestamptz not null default clock_timestamp(),
  primary key (window_start, partition)
);

-- The audit table: every login event as ingested, so the statistics can be recomputed in SQL.
create table logins (
  event_id text primary key,
  user_id text not null,
  event_time timestamptz not null,
  app_version text,
  device_type text,
  ip text,
  locale text,
  device_id text,
  ingested_at timestamptz not null,
  persisted_at timestamptz not null default clock_timestamp(),
  source_partition integer not null,
  source_offset bigint not null
);

create index logins_event_time on logins (event_time);

-- The published interval statistics: per window, the interval counts of all partitions together, and running totals.
create view login_stats as
with windows as (
  select window_start, max(window_end) as window_end,
    sum(messages)::bigint as interval_messages_consumed, sum(late_messages)::bigint as late_messages
  from login_window_stats
  group by window_start
),
devices as (
  select s.window_start, d.key, sum(d.value::bigint) as n
  from login_window_stats s, jsonb_each_text(s.device_type_count) d
  group by 1, 2
),
missing as (
  select s.window_start, m.key, sum(m.value::bigint) as n
  from login_window_stats s, jsonb_each_text(s.missing_field_count) m
  group by 1, 2
)
select
  w.window_start as timestamp_start,
  w.window_end as timestamp_end,
  w.interval_messages_consumed,
  w.late_messages,
  coalesce((select jsonb_object_agg(key, n) from devices d where d.window_start = w.window_start), '{}')
    as interval_device_type_count,
  coalesce((select jsonb_object_agg(key, n) from missing m where m.window_start = w.window_start), '{}')
    as interval_missing_field_count,
  sum(w.interval_messages_consumed + w.late_messages) over (order by w.window_start) as total_messages_consumed,
  coalesce((select jsonb_object_agg(key, n) from (
    select key, sum(n) as n from devices d where d.window_start <= w.window_start group by key) t), '{}')
    as total_device_type_count,
  coalesce((select jsonb_object_agg(key, n) from (
    select key, sum(n) as n from missing m where m.window_start <= w.window_start group by key) t), '{}')
    as total_missing_field_count
from windows w;
