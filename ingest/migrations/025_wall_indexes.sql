-- The wall (issue 14) builds its summary every few seconds per screen. Its queries of today's
-- figures read the area's whole incident and task history (a sequential scan each) without
-- these. Checked with EXPLAIN on a year of a city's history (`gridwatch bench wall`,
-- docs/benchmarks.md, "Wall"). Open incidents and tasks need nothing new: the partial indexes
-- on what is open (incidents_one_open, tasks_open) already keep those queries to the few open
-- rows; partial GiST path indexes on them were tried and bought nothing measurable.

-- Incidents resolved today (the day's figures; opened today uses incidents_opened).
CREATE INDEX incidents_resolved ON incidents (resolved_at);
-- Tasks of a period (the KPIs: today's on the wall, 30 days on the KPI page; ingest/kpi.py).
CREATE INDEX tasks_created ON tasks (created_at);
