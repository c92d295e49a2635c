"""``HiveError``: the one base of the exceptions Hive raises for its users to see. Imports nothing.

Users are whoever calls Hive: an operator at the command line (bad settings, credentials, an
embedded nats-server that would not start), an agent author using the SDK (a superseded attempt,
a refused publish, a stale append), an HTTP client (``ApiError``), or code decoding events.
``except HiveError`` catches all of them and nothing else. Each keeps the built-in base it had
(``ValueError``, ``PermissionError``, ``RuntimeError``), so existing handlers still match.

Internal signals (a lost consumer, a heartbeat that does not decode, a simulated failure) are not
users' business and do not derive from it. Every layer may import this module.
"""

from __future__ import annotations


class HiveError(Exception):
    """Something Hive refused or could not do, said in words meant for the person who asked."""
