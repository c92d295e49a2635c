"""An append's command is built by the bus (``hpub_command``): byte for byte what nats-py's
``publish`` writes for the same subject, reply, headers and payload, with the same errors."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import nats.errors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from shared.bus import hpub_command


def _drive(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that never suspends (nats-py's publish on a client not connected yet)."""
    with pytest.raises(StopIteration):
        coro.send(None)


def nats_py_command(subject: str, reply: str, headers: dict[str, str], payload: bytes) -> bytes:
    client = Client()
    client._max_pending_size = 1 << 20  # as once connected (it buffers while reconnecting)
    client._max_payload = 1 << 20
    written: list[bytes] = []

    async def capture(cmd: bytes, priority: bool = False) -> None:
        written.append(cmd)

    client._send_command = capture  # type: ignore[method-assign]
    _drive(client.publish(subject, payload, reply=reply, headers=headers))
    assert len(written) == 1
    return written[0]


def outcome(build: Any, *args: Any) -> bytes | type[BaseException]:
    try:
        return bytes(build(*args))
    except nats.errors.Error as exc:
        return type(exc)


_names = st.one_of(
    st.sampled_from(
        [
            "Nats-Msg-Id",
            "Nats-Expected-Last-Subject-Sequence",
            "traceparent",
            " padded ",
            "",
            "bad key",
            "k:v",
        ]
    ),
    st.text(alphabet=st.characters(codec="ascii"), max_size=8),
)
_values = st.text(max_size=20) | st.sampled_from(["assign:t1:1", " 12 ", "a\r\nPUB x 1", "\n", "é"])


@settings(max_examples=400, deadline=None)
@given(
    subject=st.sampled_from(["hive.evt.task.t1.assigned", "hive.evt.agent.a.registered", "a b", "x\r\ny"]),
    headers=st.dictionaries(_names, _values, max_size=4),
    payload=st.binary(max_size=40),
)
def test_the_command_is_nats_py_s_byte_for_byte(
    subject: str, headers: dict[str, str], payload: bytes
) -> None:
    reply = "_INBOX.abc.17"
    assert outcome(hpub_command, subject, reply, headers, payload) == outcome(
        nats_py_command, subject, reply, headers, payload
    )


def test_an_empty_subject_is_refused_as_nats_py_refuses_it() -> None:
    with pytest.raises(nats.errors.BadSubjectError):
        hpub_command("", "_INBOX.x.1", {"Nats-Msg-Id": "m"}, b"{}")
