"""Workflow engine: runs DAGs of tasks (the engine itself comes with the workflow issue)."""
