"""The command line as an operator uses it. Admin and config commands run in this process
against a real gateway over HTTP; one real ``serve`` process shows what only a process can
(SIGTERM drain, JSON log lines on stdout)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.settings import settings_table
from tests.conftest import ADMIN_TOKEN, NANO, SIM_TOKEN, Gateway, Simulator, free_port, run_cli


@dataclass
class Cli:
    """``runcomfy-gateway admin`` against one gateway, with the bootstrap token by default."""

    url: str

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        return await self.as_(ADMIN_TOKEN, *args)

    async def as_(self, token: str, *args: str) -> tuple[int, str, str]:
        """The admin command ARGS with another admin token."""
        return await run_cli("admin", "--url", self.url, "--token", token, *args)


@pytest.fixture
def cli(gateway: Gateway) -> Cli:
    return Cli(gateway.url)


async def test_admin_cli_manages_teams_and_keys_with_tables_and_json(cli: Cli) -> None:
    code, out, err = await cli("teams", "create", "design", "--name", "Design")
    assert code == 0, err
    assert "design" in out and "Design" in out
    code, out, err = await cli("keys", "create", "design", "--name", "laptop")
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    assert key.startswith("rcg_")
    code, out, _ = await cli("--json", "keys", "list", "design")
    listing = json.loads(out)
    (info,) = listing["keys"]
    assert info["name"] == "laptop" and info["active"] is True and key not in out
    code, out, _ = await cli("keys", "revoke", info["key_id"])
    assert code == 0 and "False" in out
    code, out, _ = await cli("--json", "teams", "list")
    assert [t["team_id"] for t in json.loads(out)["teams"]] == ["design"]
    code, out, err = await cli("teams", "show", "nope")
    assert code != 0 and "404" in err
    code, out, _ = await cli("teams", "delete", "design", "--yes")
    assert code == 0


async def test_admin_cli_sets_limits_piece_by_piece_and_reads_usage(cli: Cli) -> None:
    await cli("teams", "create", "design")
    _, out, _ = await cli("--json", "keys", "create", "design")
    key_id = json.loads(out)["key_id"]
    code, out, err = await cli(
        "limits", "set", "design",
        "--budget", "25", "--period", "week", "--daily", "500", "--models", "google/*,openai/*",
    )  # fmt: skip
    assert code == 0, err
    assert "Budget" in out and "$25.0" in out and "google/*, openai/*" in out
    code, out, err = await cli("limits", "set", "design", "--key", key_id, "--daily", "10")
    assert code == 0, err
    code, out, _ = await cli("--json", "limits", "show", "design")
    limits = json.loads(out)
    assert limits["budget_usd"] == 25 and limits["budget_period"] == "week"
    assert limits["daily_requests"] == 500 and limits["keys"][key_id]["daily_requests"] == 10
    code, out, err = await cli(
        "limits", "set", "design", "--clear", "daily_requests", "--all-models"
    )
    assert code == 0, err
    _, out, _ = await cli("--json", "limits", "show", "design")
    limits = json.loads(out)
    assert limits["daily_requests"] is None and limits["models"] is None
    assert limits["budget_usd"] == 25
    code, out, err = await cli("limits", "set", "design", "--key", key_id, "--max-concurrent", "2")
    assert code != 0 and "team-wide only" in err
    code, out, err = await cli("usage", "design")
    assert code == 0, err
    assert "Usage of design by day" in out and "hit rate" in out
    code, out, err = await cli("--json", "unreconciled", "list", "design")
    assert code == 0 and json.loads(out)["jobs"] == []


async def test_admin_cli_sets_the_dedup_policy_and_purges_the_cache(cli: Cli) -> None:
    await cli("teams", "create", "design")
    _, out, _ = await cli("--json", "keys", "create", "design")
    key_id = json.loads(out)["key_id"]
    code, out, err = await cli(
        "dedup", "set", "design", "--default", "inflight",
        "--key", f"{key_id}=off", "--model", "openai/gpt-image-2/text-to-image=seeded",
    )  # fmt: skip
    assert code == 0, err
    assert "inflight" in out and f"key {key_id}" in out and "seeded" in out
    _, out, _ = await cli("--json", "dedup", "show", "design")
    shown = json.loads(out)
    assert shown["keys"] == {key_id: "off"}
    assert shown["models"] == {"openai/gpt-image-2/text-to-image": "seeded"}
    code, out, err = await cli("dedup", "set", "design", "--default", "seeded")
    assert code == 0 and "seeded" in out, err
    code, _, err = await cli("dedup", "set", "design", "--key", "x=maybe")
    assert code != 0 and "NAME=cache|seeded|inflight|off" in err
    code, out, err = await cli("purge", "design", "--model", "a/b")
    assert code == 0 and "Purged 0 cached results." in out, err
    code, _, err = await cli("purge")
    assert code != 0 and "give a TEAM_ID" in err


async def test_admin_cli_with_a_wrong_token_says_so(cli: Cli) -> None:
    code, _, err = await cli.as_("wrong", "teams", "list")
    assert code != 0 and "401" in err


async def test_admin_cli_manages_admin_tokens_and_reads_the_audit_log(cli: Cli) -> None:
    code, out, err = await cli("--json", "admins", "create", "alice", "--role", "admin")
    assert code == 0, err
    alice = json.loads(out)
    code, out, err = await cli.as_(alice["token"], "whoami")
    assert code == 0 and "alice" in out, err
    code, out, err = await cli.as_(alice["token"], "teams", "create", "ml")
    assert code == 0, err
    code, out, err = await cli.as_(alice["token"], "admins", "create", "vic")  # viewer by default
    assert code == 0 and "viewer" in out, err
    vic_token = out.strip().splitlines()[-1]
    assert vic_token.startswith("rca_")
    code, out, _ = await cli.as_(vic_token, "teams", "list")
    assert code == 0 and "ml" in out
    code, _, err = await cli.as_(vic_token, "teams", "create", "nope")
    assert code != 0 and "403" in err
    code, out, _ = await cli("admins", "list")
    assert "alice" in out and "vic" in out and vic_token not in out
    code, out, _ = await cli("--json", "audit", "--actor", "alice")
    entries = json.loads(out)["entries"]
    assert [e["action"] for e in entries] == ["admin_token.create", "team.create"]
    assert vic_token not in out and alice["token"] not in out
    code, out, _ = await cli("audit", "--team", "ml")
    assert code == 0 and "team.create" in out and "alice" in out
    vic_id = vic_token.split("_")[1]
    code, _, err = await cli("admins", "revoke", vic_id)
    assert code == 0, err
    code, _, err = await cli.as_(vic_token, "teams", "list")
    assert code != 0 and "401" in err


async def test_admin_cli_creates_expiring_keys_and_rotates_them(cli: Cli) -> None:
    await cli("teams", "create", "ml")
    code, out, err = await cli("--json", "keys", "create", "ml", "--expires-in", "12h")
    assert code == 0, err
    old = json.loads(out)
    assert old["expires_at"] and old["active"] is True
    code, _, err = await cli("keys", "create", "ml", "--expires-in", "soon")
    assert code == 2 and "duration" in err
    code, out, err = await cli("keys", "rotate", old["key_id"], "--grace", "0")
    assert code == 0, err
    new_key = out.strip().splitlines()[-1]
    assert new_key.startswith("rcg_")
    async with aiohttp.ClientSession() as http:
        for key, expected in ((old["key"], 401), (new_key, 200)):
            async with http.get(
                f"{cli.url}/v1/models/{NANO}", headers={"Authorization": f"Bearer {key}"}
            ) as resp:
                assert resp.status == expected
    code, out, _ = await cli("--json", "keys", "list", "ml")
    listing = {k["key_id"]: k for k in json.loads(out)["keys"]}
    assert listing[old["key_id"]]["active"] is False
    assert listing[old["key_id"]]["replaced_by"] in listing


async def test_serve_runs_as_a_process_drains_on_sigterm_and_logs_json_lines(
    simulator: Simulator, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """The subprocess smoke test: ``python -m gateway serve`` as an operator starts it. A request
    in flight when SIGTERM arrives still gets its answer, the process exits 0, and stdout holds
    one JSON object per line (request and admin events) with no key or token in it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "GATEWAY_UPSTREAM_MODEL_API_URL": simulator.url,
        "GATEWAY_UPSTREAM_SERVERLESS_URL": simulator.url,
        "GATEWAY_UPSTREAM_TOKEN": SIM_TOKEN,
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_REDIS_NAMESPACE": namespace,
        "GATEWAY_DATA_DIR": str(tmp_path),
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--port", str(port),
            env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(400):
                try:
                    async with http.get(f"{url}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(log_path.read_text())
            cli = Cli(url)
            assert (await cli("--json", "teams", "create", "design"))[0] == 0
            _, out, _ = await cli("--json", "keys", "create", "design")
            key = json.loads(out)["key"]
            for bearer in (key, key + "x"):
                async with http.post(
                    f"{url}/v1/models/{NANO}",
                    json={"prompt": "x"},
                    headers={"Authorization": f"Bearer {bearer}"},
                ) as resp:
                    await resp.read()
            # a catalog read still goes to RunComfy: make RunComfy slow, then stop the gateway
            await simulator.fault(route="catalog.get", action="delay", delay=1.0)
            slow = asyncio.create_task(
                http.get(f"{url}/v1/models/{NANO}", headers={"Authorization": f"Bearer {key}"})
            )
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            resp = await slow
            assert resp.status == 200
            assert (await resp.json())["model_id"] == NANO
            resp.release()
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = log_path.read_text()
    events: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line]
    requests = [e for e in events if e.get("event") == "request"]
    admin = [e for e in events if e.get("event") == "admin_action"]
    assert [e["action"] for e in admin] == ["team.create", "key.create"]
    assert all(e["actor"] == "bootstrap" and e["correlation_id"] for e in admin)
    assert admin[0]["target"] == "team/design" and admin[0]["after"]["team_id"] == "design"
    assert admin[1]["target"].startswith("team/design/key/") and admin[1]["before"] is None
    assert any(e["status"] == 200 and e["team"] == "design" for e in requests)
    assert any(e["status"] == 401 for e in requests)
    assert all({"correlation_id", "route", "latency_ms", "method"} <= set(e) for e in requests)
    assert any(e.get("upstream_request_id") for e in requests)  # the submit that went upstream
    for secret in (key, key.rsplit("_", 1)[1], SIM_TOKEN, ADMIN_TOKEN):
        assert secret not in text
    assert "Traceback" not in text


def test_the_documented_settings_table_is_generated_from_the_settings() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    assert settings_table().strip() in page, "paste: runcomfy-gateway config --markdown"


async def test_config_markdown_lists_every_setting() -> None:
    code, out, _ = await run_cli("config", "--markdown")
    assert code == 0
    for name in ("GATEWAY_UPSTREAM_TOKEN", "GATEWAY_REDIS_URL", "GATEWAY_REDIS_SERVER"):
        assert name in out
    code, _, err = await run_cli("config", env={"GATEWAY_PORT": "not-a-port"})
    assert code == 2 and "GATEWAY_PORT" in err
