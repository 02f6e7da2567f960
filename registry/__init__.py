"""The registry: what a city has and who may do what in it.

The declarative registry file (YAML, with CSV for the long tables) and its plan, apply and
export; node secrets and enrolment; each node's configuration pushed to it; the broker's
accounts kept in step with the registry. Imported by the API, the ingest leader's duties (wired
in by `gridwatch/`) and the command line. May import `gateway`, `casework` and `ingest` (the store).
"""
