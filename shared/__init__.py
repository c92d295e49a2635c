"""Hive's shared package: everything every service uses and nothing service-specific."""
