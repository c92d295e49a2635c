"""`hive health` asks the running services over NATS, as a container healthcheck would."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from services.router.service import RouterService
from shared.settings import Settings
from tests.conftest import running


def health(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NATS_URL=settings.nats_url)
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", "health", "--timeout", "1", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_health_passes_for_a_running_service_and_fails_for_missing_ones(settings: Settings) -> None:
    async with running(RouterService, settings, instance="router-on-this-host"):
        only_router = await asyncio.to_thread(health, settings, "--service", "router")
        everything = await asyncio.to_thread(health, settings)
    assert only_router.returncode == 0, only_router.stdout + only_router.stderr
    assert "router-on-this-host" in only_router.stdout
    assert everything.returncode == 1
    assert "gateway   MISSING" in everything.stdout


async def test_health_fails_clearly_when_nats_is_unreachable(settings: Settings) -> None:
    env = dict(os.environ, NATS_URL="nats://127.0.0.1:1")
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli.main", "health", "--timeout", "0.5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "cannot reach NATS" in result.stderr
