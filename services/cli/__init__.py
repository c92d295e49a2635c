"""The ``hive`` command line."""
