"""A service whose NATS connection fails as it closes still closes its stores and exits: a live
SQLite thread would keep the process from exiting (an orphan its supervisor never sees)."""

from __future__ import annotations

from typing import Any

import msgspec
import nats.errors
import pytest

from services.gateway.query import files
from services.gateway.service import GatewayService
from services.recovery.service import RecoveryService
from shared.bus import EventBus
from shared.settings import Settings


async def test_a_close_into_a_transport_already_gone_is_logged_not_raised(settings: Settings) -> None:
    bus = await EventBus.connect(settings.nats_url, "closing")

    async def no_drain(*_: Any, **__: Any) -> None:
        raise nats.errors.ConnectionClosedError

    async def transport_gone(*_: Any, **__: Any) -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")

    real_close = bus.nc.close
    bus.nc.drain = no_drain  # type: ignore[method-assign]
    bus.nc.close = transport_gone  # type: ignore[method-assign]
    await bus.close()  # logged as nats_close_failed, not raised
    await real_close()


async def test_a_stop_that_fails_midway_still_closes_the_snapshot_store(settings: Settings) -> None:
    service = RecoveryService(settings)
    await service.start()
    assert service.store is not None
    store = service.store

    async def broken_stop() -> None:
        raise RuntimeError("the projection's reader failed as it stopped")

    service.runners[0].stop = broken_stop  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="failed as it stopped"):
        await service.stop()
    assert store._db is None  # its thread ended
    assert service.bus.nc.is_connected  # what failed came first; the connection is closed below
    await service.bus.close()


async def test_a_gateway_whose_own_stop_fails_still_lets_go_of_its_query_model_and_stores(
    settings: Settings,
) -> None:
    gateway = GatewayService(msgspec.structs.replace(settings, instance="stopping-gw"))
    await gateway.start()
    assert gateway.store is not None
    store, query_store = gateway.store, gateway.query._store
    assert query_store is not None

    async def broken_stop() -> None:
        raise RuntimeError("the agent monitor failed as it stopped")

    gateway.monitor.stop = broken_stop  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="monitor failed as it stopped"):
        await gateway.stop()
    assert store._db is None and query_store._writer is None and not query_store._readers
    # Its file's lock is gone: the next gateway of that name opens it.
    files.claim(settings.hive_home, "stopping-gw").release()
    await gateway.bus.close()


async def test_a_release_that_fails_still_closes_the_snapshot_store(settings: Settings) -> None:
    service = RecoveryService(settings)
    await service.start()
    assert service.store is not None
    store = service.store

    async def broken_release() -> None:
        raise RuntimeError("a file of the service would not close")

    service.on_released = broken_release  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="would not close"):
        await service.stop()
    assert store._db is None
