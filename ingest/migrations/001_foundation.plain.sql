-- Plain PostgreSQL: the hourly occupancy roll-up is a view computed on read, with the same
-- columns as the TimescaleDB continuous aggregate, so queries are the same on both.
CREATE VIEW occupancy_hourly AS
SELECT date_trunc('hour', ts, 'UTC') AS bucket,
       device_id,
       zone,
       avg(count)::double precision AS avg_count,
       max(count)                   AS max_count,
       min(count)                   AS min_count,
       sum(entered)::bigint         AS entered,
       sum(exited)::bigint          AS exited,
       count(*)::bigint             AS samples
FROM occupancy
GROUP BY 1, 2, 3;
