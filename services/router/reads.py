"""Each event the router reads is decoded once, and the events it appends are not decoded at all.

A router instance reads most events twice over: a task's submission comes to its work
consumer and to its projection, and each assignment it appends (about 2 KB of explanation,
breakdown, rivals and payload) comes back to its projection. Decoding is deterministic on the
stored bytes, so whichever reader decodes a message first keeps the result, by stream sequence, for
the other one. An event this instance appends is kept with the bytes it was sent as, by subject
(a list: several assignments to one agent share its subject, and may all be on their way): when the
projection reads exactly those bytes on that subject, it applies the event in hand (decoding them
gives the same event, to the type of every field: a test says so); other bytes (a rival's event, an
earlier attempt's) are decoded. Pure: no I/O.
"""

from __future__ import annotations

from shared.events import Event
from shared.recorded import Recorded, Undecodable, decode_recorded

FOR_VIEW_MAX = 4096
"""Events kept for the projection, at most (it reads a few milliseconds behind the work consumer
and the appends' acknowledgements; beyond, the oldest half is forgotten: one read while its append
was being acknowledged is never asked for)."""
APPENDING_MAX = 1024
"""Subjects with appended events kept until read back, at most (beyond, the oldest half is
forgotten: one refused by the server is never read back)."""
APPENDING_PER_SUBJECT = 64
"""Appended events kept per subject, at most (beyond, the oldest is forgotten)."""
FOR_WORK_MAX = 16384
"""Work events the projection decoded, kept for the work consumer, at most. The work consumer may
be thousands of events behind (a backlog waits in the stream): when full, those it went past (given
to another instance) are forgotten, and new ones are not kept until there is room."""
WORK_SUFFIXES = (".submitted",)
"""Subjects of the work events the projection keeps for the work consumer (submissions, as frequent
as tasks; requeues are rare and come through a durable of their own that does not share)."""

Read = Recorded | Undecodable


class Decodings:
    """Decoded or appended events of this instance, kept by stream sequence until the other reader
    of the same message takes them."""

    def __init__(self, for_view_max: int = FOR_VIEW_MAX, for_work_max: int = FOR_WORK_MAX) -> None:
        self.for_view_max = for_view_max
        self.for_work_max = for_work_max
        self._for_view: dict[int, Recorded] = {}
        self._for_work: dict[int, Recorded] = {}
        self._appending: dict[str, list[tuple[bytes, Event]]] = {}
        """Subject -> the bytes and events this instance appended to it and has not read back, in
        the order it sent them."""
        self._work_at = 0
        """The last sequence the work consumer was given: what it went past is not for it."""
        self._ascending = True
        """Whether ``_for_work`` holds its events in the order of their sequences (the projection
        reads the stream in order: unless it reads some again, it does)."""
        self._last_kept = 0
        """The highest sequence kept in ``_for_work`` since it was last empty."""
        self.decoded = 0
        """Messages decoded."""
        self.reused = 0
        """Messages handed an event kept here instead of decoding them."""
        self.work_again = 0
        """Work messages given at or below a sequence the work consumer was already given (a claim
        redelivered once its acknowledgement wait ran out): the projection may have read and decoded
        each already, so each may be decoded a second time."""

    def kept(self) -> int:
        return len(self._for_view) + len(self._for_work) + sum(map(len, self._appending.values()))

    def appending(self, event: Event, data: bytes) -> None:
        """This instance sends `event` as `data`: read back as those bytes, it is not decoded."""
        kept = self._appending
        subject = event.subject
        sent = kept.get(subject)
        if sent is None:
            kept[subject] = [(data, event)]
            if len(kept) > APPENDING_MAX:
                for old in list(kept)[: len(kept) - APPENDING_MAX // 2]:
                    del kept[old]
            return
        sent.append((data, event))
        if len(sent) > APPENDING_PER_SUBJECT:
            del sent[0]

    def _sent(self, subject: str, data: bytes) -> Event | None:
        """The event this instance sent as `data` on `subject`, forgotten once read back (with any
        sent there before it: refused, or read back as a rival's bytes would be, decoded)."""
        sent = self._appending.get(subject)
        if sent is None:
            return None
        for index, (bytes_sent, event) in enumerate(sent):
            if bytes_sent == data:
                del sent[: index + 1]
                if not sent:
                    del self._appending[subject]
                return event
        return None

    def for_view(self, seq: int, subject: str, data: bytes) -> Read:
        """What the projection applies at `seq`; a work event it decodes is kept for the work consumer."""
        found = self._for_view.pop(seq, None)
        if found is not None and found.subject == subject:
            self.reused += 1
            return found
        sent = self._sent(subject, data)
        if sent is not None:
            self.reused += 1
            return Recorded(seq, subject, sent)  # type: ignore[arg-type]  # an AnyEvent member
        item = self._decode(seq, subject, data)
        if isinstance(item, Recorded) and seq > self._work_at and subject.endswith(WORK_SUFFIXES):
            self._keep_for_work(item)
        return item

    def for_work(self, seq: int, subject: str, data: bytes, view_at: int) -> Read:
        """What the work consumer is given at `seq`; what it decodes is kept for the projection (at
        `view_at`) if it has not read it yet."""
        if seq <= self._work_at:
            self.work_again += 1
        else:
            self._work_at = seq
        found = self._for_work.pop(seq, None)
        if found is not None and found.subject == subject:
            self.reused += 1
            return found
        item = self._decode(seq, subject, data)
        if isinstance(item, Recorded) and seq > view_at:
            self._keep_for_view(item)
        return item

    def _decode(self, seq: int, subject: str, data: bytes) -> Read:
        self.decoded += 1
        return decode_recorded(seq, subject, data)

    def _keep_for_view(self, recorded: Recorded) -> None:
        kept = self._for_view
        kept[recorded.seq] = recorded
        if len(kept) > self.for_view_max:
            for seq in list(kept)[: len(kept) - self.for_view_max // 2]:
                del kept[seq]

    def _keep_for_work(self, recorded: Recorded) -> None:
        kept = self._for_work
        if not kept:
            self._ascending, self._last_kept = True, 0
        if len(kept) >= self.for_work_max:
            work_at = self._work_at
            if self._ascending:
                # Kept in stream order: those the work consumer went past are the first ones, and
                # the walk stops at the first it has not (with a backlog, when full, a walk over
                # every one found none to forget and ran for every submission read: a tenth of
                # the router's CPU and growing).
                gone = []
                for seq in kept:
                    if seq > work_at:
                        break
                    gone.append(seq)
            else:  # (a view read some sequences again: any order)
                gone = [seq for seq in kept if seq <= work_at]
            for seq in gone:
                del kept[seq]
            if len(kept) >= self.for_work_max:
                return
        seq = recorded.seq
        if seq < self._last_kept:
            self._ascending = False
        else:
            self._last_kept = seq
        kept[seq] = recorded
