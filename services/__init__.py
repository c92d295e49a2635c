"""The five Hive services; each runs as ``python -m services.<name>``, as many instances as needed."""
