"""The whole system on one machine: the embedded PostgreSQL and Mosquitto (`services`), the
stack that provisions and starts them with the ingest and the API (`stack`), `gridwatch up`
(`up`) under its supervisor (`supervise`), ingest worker slots (`workers`) and the home folder
that holds a stack's state and secrets (`home`)."""
