-- Enriched vehicle positions, one row per event_id whatever the replays upstream.
create table vehicle_positions (
  event_id text primary key,
  vehicle_id text not null,
  event_time timestamptz not null,
  lat double precision not null,
  long double precision not null,
  timezone text not null,
  utc_offset_minutes smallint not null,
  -- Wall-clock time where the vehicle was; event_time + utc_offset_minutes gives it back.
  local_time timestamp not null,
  -- km/h over ground, 0 to 500.
  speed double precision not null,
  -- Degrees clockwise from north, at least 0 and below 360; NULL when the device sent none.
  heading double precision,
  -- A flat object of at most 16 string or number values; NULL when the device sent none.
  metadata jsonb,
  ingested_at timestamptz not null,
  persisted_at timestamptz not null default clock_timestamp(),
  source_partition integer not null,
  source_offset bigint not null
);

-- "A vehicle's track by time".
create index vehicle_positions_vehicle_time on vehicle_positions (vehicle_id, event_time);
