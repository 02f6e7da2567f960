"""Casework: what the platform makes of what happened.

Rules (signals in, raise/clear/timer decisions out), incidents, grid tasks with their deadlines
and escalation up the territory tree, emergency mode, proposals, KPIs, and the titles and words
incidents and tasks are shown with (zh-CN and en). Imported by the ingest (which feeds it), the
registry, notifications and the API. May import `gateway` only: it knows nothing of MQTT
sessions, the broker or how a batch was consumed.
"""
