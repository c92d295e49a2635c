"""Fixtures for tests that talk to the gateway over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.gateway.service import GatewayService
from shared.settings import Settings
from tests.conftest import running


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[GatewayService]:
    async with running(GatewayService, settings) as service:
        yield service


@pytest.fixture
async def http(gateway: GatewayService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as client:
        yield client
