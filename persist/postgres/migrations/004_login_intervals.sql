-- One row per event-time window over all partitions of logins.raw, as intervals.ts emits them to
-- logins.intervals (epoch seconds there, timestamptz here). A re-emitted window has the same content and
-- overwrites its row.
create table login_intervals (
  timestamp_start timestamptz not null,
  timestamp_end timestamptz not null,
  interval_messages_consumed integer not null,
  late_messages integer not null,
  interval_device_type_count jsonb not null,
  interval_missing_field_count jsonb not null,
  total_messages_consumed bigint not null,
  total_device_type_count jsonb not null,
  total_missing_field_count jsonb not null,
  updated_at timestamptz not null default clock_timestamp(),
  primary key (timestamp_start)
);

-- The published statistics now read the merged windows instead of merging the partials: the merge (and its
-- late and total rules) is written once, in intervals/merge.ts.
drop view login_stats;
create view login_stats as
select timestamp_start, timestamp_end, interval_messages_consumed, late_messages, interval_device_type_count,
  interval_missing_field_count, total_messages_consumed, total_device_type_count, total_missing_field_count
from login_intervals;
