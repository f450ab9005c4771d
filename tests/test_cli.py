"""The command line as an operator uses it: a real ``serve`` process, admin commands, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.settings import settings_table
from tests.conftest import ADMIN_TOKEN, NANO, SIM_TOKEN, Simulator, free_port


@dataclass
class ServeProcess:
    process: asyncio.subprocess.Process
    url: str
    env: dict[str, str]


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def serve(
    simulator: Simulator, redis_url: str, namespace: str, tmp_path: Path
) -> AsyncIterator[ServeProcess]:
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_UPSTREAM_MODEL_API_URL": simulator.url,
        "GATEWAY_UPSTREAM_SERVERLESS_URL": simulator.url,
        "GATEWAY_UPSTREAM_TOKEN": SIM_TOKEN,
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_REDIS_NAMESPACE": namespace,
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_ADMIN_URL": f"http://127.0.0.1:{port}",
    }
    log = (tmp_path / "serve.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--port", str(port),
        env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        else:
            raise AssertionError((tmp_path / "serve.log").read_text())
    yield ServeProcess(process, url, env)
    if process.returncode is None:
        process.kill()
        await process.wait()
    log.close()


async def test_admin_cli_manages_teams_and_keys_with_tables_and_json(serve: ServeProcess) -> None:
    code, out, err = await _cli(serve.env, "admin", "teams", "create", "design", "--name", "Design")
    assert code == 0, err
    assert "design" in out and "Design" in out
    code, out, err = await _cli(serve.env, "admin", "keys", "create", "design", "--name", "laptop")
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    assert key.startswith("rcg_")
    code, out, _ = await _cli(serve.env, "admin", "--json", "keys", "list", "design")
    listing = json.loads(out)
    (info,) = listing["keys"]
    assert info["name"] == "laptop" and info["active"] is True and key not in out
    code, out, _ = await _cli(serve.env, "admin", "keys", "revoke", info["key_id"])
    assert code == 0 and "False" in out
    code, out, _ = await _cli(serve.env, "admin", "--json", "teams", "list")
    assert [t["team_id"] for t in json.loads(out)["teams"]] == ["design"]
    code, out, err = await _cli(serve.env, "admin", "teams", "show", "nope")
    assert code != 0 and "404" in err
    code, out, _ = await _cli(serve.env, "admin", "teams", "delete", "design", "--yes")
    assert code == 0


async def test_admin_cli_sets_limits_piece_by_piece_and_reads_usage(serve: ServeProcess) -> None:
    await _cli(serve.env, "admin", "teams", "create", "design")
    _, out, _ = await _cli(serve.env, "admin", "--json", "keys", "create", "design")
    key_id = json.loads(out)["key_id"]
    code, out, err = await _cli(
        serve.env, "admin", "limits", "set", "design",
        "--budget", "25", "--period", "week", "--daily", "500", "--models", "google/*,openai/*",
    )  # fmt: skip
    assert code == 0, err
    assert "Budget" in out and "$25.0" in out and "google/*, openai/*" in out
    code, out, err = await _cli(
        serve.env, "admin", "limits", "set", "design", "--key", key_id, "--daily", "10"
    )
    assert code == 0, err
    code, out, _ = await _cli(serve.env, "admin", "--json", "limits", "show", "design")
    limits = json.loads(out)
    assert limits["budget_usd"] == 25 and limits["budget_period"] == "week"
    assert limits["daily_requests"] == 500 and limits["keys"][key_id]["daily_requests"] == 10
    code, out, err = await _cli(
        serve.env, "admin", "limits", "set", "design", "--clear", "daily_requests", "--all-models"
    )
    assert code == 0, err
    _, out, _ = await _cli(serve.env, "admin", "--json", "limits", "show", "design")
    limits = json.loads(out)
    assert limits["daily_requests"] is None and limits["models"] is None
    assert limits["budget_usd"] == 25
    code, out, err = await _cli(
        serve.env, "admin", "limits", "set", "design", "--key", key_id, "--max-concurrent", "2"
    )
    assert code != 0 and "team-wide only" in err
    code, out, err = await _cli(serve.env, "admin", "usage", "design")
    assert code == 0, err
    assert "Usage of design by day" in out and "hit rate" in out
    code, out, err = await _cli(serve.env, "admin", "--json", "unreconciled", "list", "design")
    assert code == 0 and json.loads(out)["jobs"] == []


async def test_admin_cli_sets_the_dedup_policy_and_purges_the_cache(serve: ServeProcess) -> None:
    await _cli(serve.env, "admin", "teams", "create", "design")
    _, out, _ = await _cli(serve.env, "admin", "--json", "keys", "create", "design")
    key_id = json.loads(out)["key_id"]
    code, out, err = await _cli(
        serve.env, "admin", "dedup", "set", "design", "--default", "inflight",
        "--key", f"{key_id}=off", "--model", "openai/gpt-image-2/text-to-image=cache",
    )  # fmt: skip
    assert code == 0, err
    assert "inflight" in out and f"key {key_id}" in out
    _, out, _ = await _cli(serve.env, "admin", "--json", "dedup", "show", "design")
    assert json.loads(out)["keys"] == {key_id: "off"}
    code, _, err = await _cli(serve.env, "admin", "dedup", "set", "design", "--key", "x=maybe")
    assert code != 0 and "NAME=cache|inflight|off" in err
    code, out, err = await _cli(serve.env, "admin", "purge", "design", "--model", "a/b")
    assert code == 0 and "Purged 0 cached results." in out, err
    code, _, err = await _cli(serve.env, "admin", "purge")
    assert code != 0 and "give a TEAM_ID" in err


async def test_admin_cli_with_a_wrong_token_says_so(serve: ServeProcess) -> None:
    env = {**serve.env, "GATEWAY_ADMIN_TOKEN": "wrong"}
    code, _, err = await _cli(env, "admin", "teams", "list")
    assert code != 0 and "401" in err


async def test_admin_cli_manages_admin_tokens_and_reads_the_audit_log(serve: ServeProcess) -> None:
    code, out, err = await _cli(
        serve.env, "admin", "--json", "admins", "create", "alice", "--role", "admin"
    )
    assert code == 0, err
    alice = json.loads(out)
    as_alice = {**serve.env, "GATEWAY_ADMIN_TOKEN": alice["token"]}
    code, out, err = await _cli(as_alice, "admin", "whoami")
    assert code == 0 and "alice" in out, err
    code, out, err = await _cli(as_alice, "admin", "teams", "create", "ml")
    assert code == 0, err
    code, out, err = await _cli(as_alice, "admin", "admins", "create", "vic")  # viewer by default
    assert code == 0 and "viewer" in out, err
    vic_token = out.strip().splitlines()[-1]
    assert vic_token.startswith("rca_")
    as_vic = {**serve.env, "GATEWAY_ADMIN_TOKEN": vic_token}
    code, out, _ = await _cli(as_vic, "admin", "teams", "list")
    assert code == 0 and "ml" in out
    code, _, err = await _cli(as_vic, "admin", "teams", "create", "nope")
    assert code != 0 and "403" in err
    code, out, _ = await _cli(serve.env, "admin", "admins", "list")
    assert "alice" in out and "vic" in out and vic_token not in out
    code, out, _ = await _cli(serve.env, "admin", "--json", "audit", "--actor", "alice")
    entries = json.loads(out)["entries"]
    assert [e["action"] for e in entries] == ["admin_token.create", "team.create"]
    assert vic_token not in out and alice["token"] not in out
    code, out, _ = await _cli(serve.env, "admin", "audit", "--team", "ml")
    assert code == 0 and "team.create" in out and "alice" in out
    vic_id = vic_token.split("_")[1]
    code, _, err = await _cli(serve.env, "admin", "admins", "revoke", vic_id)
    assert code == 0, err
    code, _, err = await _cli(as_vic, "admin", "teams", "list")
    assert code != 0 and "401" in err


async def test_admin_cli_creates_expiring_keys_and_rotates_them(serve: ServeProcess) -> None:
    await _cli(serve.env, "admin", "teams", "create", "ml")
    code, out, err = await _cli(
        serve.env, "admin", "--json", "keys", "create", "ml", "--expires-in", "12h"
    )
    assert code == 0, err
    old = json.loads(out)
    assert old["expires_at"] and old["active"] is True
    code, _, err = await _cli(serve.env, "admin", "keys", "create", "ml", "--expires-in", "soon")
    assert code == 2 and "duration" in err
    code, out, err = await _cli(serve.env, "admin", "keys", "rotate", old["key_id"], "--grace", "0")
    assert code == 0, err
    new_key = out.strip().splitlines()[-1]
    assert new_key.startswith("rcg_")
    async with aiohttp.ClientSession() as http:
        for key, expected in ((old["key"], 401), (new_key, 200)):
            async with http.get(
                f"{serve.url}/v1/models/{NANO}", headers={"Authorization": f"Bearer {key}"}
            ) as resp:
                assert resp.status == expected
    code, out, _ = await _cli(serve.env, "admin", "--json", "keys", "list", "ml")
    listing = {k["key_id"]: k for k in json.loads(out)["keys"]}
    assert listing[old["key_id"]]["active"] is False
    assert listing[old["key_id"]]["replaced_by"] in listing


async def test_sigterm_lets_in_flight_requests_finish_before_exit(
    serve: ServeProcess, simulator: Simulator
) -> None:
    await _cli(serve.env, "admin", "--json", "teams", "create", "design")
    _, out, _ = await _cli(serve.env, "admin", "--json", "keys", "create", "design")
    key = json.loads(out)["key"]
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http:
        # a catalog read still goes to RunComfy: make RunComfy slow, then stop the gateway
        await simulator.fault(route="catalog.get", action="delay", delay=1.0)
        slow = asyncio.create_task(http.get(f"{serve.url}/v1/models/{NANO}", headers=headers))
        await asyncio.sleep(0.3)
        serve.process.send_signal(signal.SIGTERM)
        resp = await slow
        assert resp.status == 200
        assert (await resp.json())["model_id"] == NANO
        resp.release()
    assert await asyncio.wait_for(serve.process.wait(), 30) == 0


async def test_logs_are_json_lines_without_keys_or_tokens(
    serve: ServeProcess, tmp_path: Path
) -> None:
    await _cli(serve.env, "admin", "--json", "teams", "create", "design")
    _, out, _ = await _cli(serve.env, "admin", "--json", "keys", "create", "design")
    key = json.loads(out)["key"]
    async with aiohttp.ClientSession() as http:
        for headers in ({"Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer {key}x"}):
            async with http.post(
                f"{serve.url}/v1/models/{NANO}", json={"prompt": "x"}, headers=headers
            ) as resp:
                await resp.read()
    serve.process.send_signal(signal.SIGTERM)
    await serve.process.wait()
    text = (tmp_path / "serve.log").read_text()
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


def test_the_readme_settings_table_is_generated_from_the_settings() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert settings_table().strip() in readme, "run: runcomfy-gateway config --markdown"


async def test_config_markdown_lists_every_setting() -> None:
    code, out, _ = await _cli(dict(os.environ), "config", "--markdown")
    assert code == 0
    for name in ("GATEWAY_UPSTREAM_TOKEN", "GATEWAY_REDIS_URL", "GATEWAY_PUBLIC_URL"):
        assert name in out
    code, _, err = await _cli({**os.environ, "GATEWAY_PORT": "not-a-port"}, "config")
    assert code == 2 and "GATEWAY_PORT" in err
