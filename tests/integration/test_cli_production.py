"""``ORCHESTRATION_MODE=production hive up``, as the specification sets it: Hive starts in the production
profile (the API behind a generated bearer token), says how it read the variable, and names a
variable it does not know."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import httpx

from shared.credentials import CredentialStore
from shared.embedded import free_port
from tests.integration.test_cli_auth import read_until


async def test_hive_up_in_production_guards_the_api_with_a_generated_token(tmp_path: Path) -> None:
    home = tmp_path / "hive"
    port = free_port()
    env = dict(
        os.environ,
        HIVE_HOME=str(home),
        NATS_URL=f"nats://127.0.0.1:{free_port()}",
        GATEWAY_PORT=str(port),
        ORCHESTRATION_MODE="production",
        ENABLE_CIRCUIT_BREAKER="true",  # a typo of ENABLE_CIRCUIT_BREAKERS
    )
    for var in ("NATS_USER", "NATS_PASSWORD", "HIVE_AGENT_CREDENTIALS", "HIVE_API_TOKEN", "INTEGRATION_MODE"):
        env.pop(var, None)
    up = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        "up",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert up.stdout is not None
    try:
        banner = await read_until(up.stdout, "Press Ctrl-C to stop.")
        assert "INTEGRATION_MODE=production, routing mode standard" in banner
        assert "ENABLE_CIRCUIT_BREAKER is not a Hive variable" in banner
        assert "did you mean ENABLE_CIRCUIT_BREAKERS?" in banner
        token_file = CredentialStore(home).api_token_path
        assert f"Bearer $(cat {token_file})" in banner
        token = token_file.read_text().strip()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert (await http.get("/api/v1/agents")).status_code == 401
            allowed = await http.get("/api/v1/agents", headers={"Authorization": f"Bearer {token}"})
            assert allowed.status_code == 200
            health = (await http.get("/api/v1/orchestration/health")).json()
        (gateway,) = health["services"]["gateway"]
        assert gateway["details"]["integration_mode"] == "production"
        assert gateway["details"]["performance_alerts"] is True
        (router,) = health["services"]["router"]
        assert router["details"]["orchestration_mode"] == "standard"
        up.send_signal(signal.SIGINT)
        await read_until(up.stdout, "Stopped.")
        assert await asyncio.wait_for(up.wait(), 60) == 0
    finally:
        if up.returncode is None:
            up.kill()
            with contextlib.suppress(Exception):
                await up.wait()
    log = (home / "logs" / "router-0.log").read_text()
    assert "unknown_environment_variable" in log and "ENABLE_CIRCUIT_BREAKER" in log, "services warn too"
