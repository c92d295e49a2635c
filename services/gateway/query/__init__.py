"""The gateway's query model: every task, workflow and agent of any age, in SQLite, kept from the log."""
