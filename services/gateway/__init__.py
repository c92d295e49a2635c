"""Gateway: the HTTP API in front of the event log (it appends events and reads projections)."""
