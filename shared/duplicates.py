"""Whether a message stored under a shared message id is the same decision as ours. Pure.

A shared key (``assign:<task>:<attempt>``, ``cancel-request:<task>:<attempt>``, ...:
``shared/domain/message_ids.py``) is predictable, and the server de-duplicates keys across the
whole stream: an append answered as a duplicate under one is either the same decision made by
someone else first (a rival router instance, another service, a redelivery) or a forgery that took
the key. The stored body says which: since notices share their agent's subject (version 3), the
subject alone no longer tells one task's assignment from another's.
"""

from __future__ import annotations

from shared.events import Event, TaskNotice, subject_of
from shared.recorded import Recorded, Undecodable


def same_decision(stored: Recorded | Undecodable | None, event: Event) -> bool:
    """`stored` (what holds our key) is `event` itself or the same decision: the same event type
    about the same aggregate and, for a notice, the same attempt of the same task, to any agent (two
    router instances that assigned one attempt at once: the first won)."""
    if not isinstance(stored, Recorded):
        return False
    theirs = stored.event
    if theirs.id == event.id:
        return True
    if type(theirs) is not type(event):
        return False
    if isinstance(event, TaskNotice):
        assert isinstance(theirs, TaskNotice)
        return (theirs.task_id, theirs.attempt) == (event.task_id, event.attempt)
    return stored.subject == subject_of(event)
