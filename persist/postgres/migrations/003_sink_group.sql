-- Each sink now consumes in a group of its own, and PostgreSQL's is persist-postgres. The positions stored under
-- the former group carry over, so an upgraded persist resumes where it stopped instead of replaying every topic.
insert into consumer_offsets (group_id, topic, partition, next_offset, updated_at)
select 'persist-postgres', topic, partition, next_offset, updated_at from consumer_offsets where group_id = 'persist'
on conflict do nothing;
