"""``new_id`` is ``uuid.uuid4().hex`` from random bytes read many ids at a time: the same form and
bits, never the same id twice (in a thread, in another one, in a forked child)."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shared.ids as ids
from shared.ids import new_id


def test_ids_are_uuid4_hex_and_never_repeat() -> None:
    made = [new_id() for _ in range(3000)]  # past several reads of random bytes
    assert len(set(made)) == len(made)
    for made_id in made:
        parsed = uuid.UUID(made_id)
        assert parsed.hex == made_id and parsed.version == 4 and parsed.variant == uuid.RFC_4122


@settings(max_examples=50)
@given(st.binary(min_size=4096, max_size=4096))
def test_an_id_has_the_bits_uuid4_makes_of_the_same_bytes(data: bytes) -> None:
    ids._pool.data = data
    ids._pool.at = 0
    for at in range(0, 64, 16):
        assert new_id() == uuid.UUID(bytes=data[at : at + 16], version=4).hex


def test_one_read_of_random_bytes_serves_many_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real = os.urandom

    def counted(size: int) -> bytes:
        reads.append(size)
        return real(size)

    monkeypatch.setattr(os, "urandom", counted)
    ids._pool.data = b""
    ids._pool.at = 0
    for _ in range(256):
        new_id()
    assert len(reads) == 1


def test_threads_and_forked_children_make_ids_of_their_own() -> None:
    new_id()  # the pool holds bytes a child would copy
    seen: list[str] = []
    worker = threading.Thread(target=lambda: seen.extend(new_id() for _ in range(100)))
    worker.start()
    worker.join(timeout=10)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write, "".join(new_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(child, 0)
    in_child = [text[i : i + 32] for i in range(0, len(text), 32)]
    here = [new_id() for _ in range(100)]
    assert len(in_child) == 100 and len(seen) == 100
    assert len(set(here) | set(in_child) | set(seen)) == 300
