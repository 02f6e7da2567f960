"""The ingest: consuming the edge's messages from MQTT and storing them.

The worker and its batch writer, the registry cache built from node births, presence
(heartbeats), the leader's timers and duties, the command publisher, ingest groups, camera
clips joined from their parts, the audit log and accounts, and the database itself (migrations
and privileges). May import `gateway` and `casework`, which it feeds.
"""
