-- A snapshot of the lake (the 1st parameter, or the newest when it is NULL) and when it was
-- taken, in microseconds since the epoch as text (as pg_lake_state.sql gives it): the two tell one
-- lake's states apart from another's ({metadata}: the metadata schema, quoted).
SELECT snapshot_id, epoch_us(snapshot_time)::VARCHAR
FROM {metadata}.ducklake_snapshot
WHERE snapshot_id = coalesce(?, (SELECT max(snapshot_id) FROM {metadata}.ducklake_snapshot))
