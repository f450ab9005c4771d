"""``runcomfy-gateway demo``: the same admin token and team key on every start, one demo key at
a time, and what it prints works when pasted."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from gateway.access.teams import ApiKey, TeamService
from gateway.cli.demo import credentials as demo
from gateway.cli.demo import start
from gateway.commands import main
from gateway.simulator import SimulatorConfig
from gateway.web.appkeys import TEAMS
from tests.conftest import NANO, Gateway, free_port, run_cli


def _demo_keys(keys: list[ApiKey]) -> list[str]:
    return [k.key_id for k in keys if k.active and k.name == demo.DEMO_KEY_NAME]


async def test_the_demo_key_is_stored_privately_and_reused_while_it_works(
    gateway: Gateway, tmp_path: Path
) -> None:
    teams: TeamService = gateway.app[TEAMS]
    first = await demo.team_key(teams, tmp_path)
    assert (tmp_path / demo.CREDENTIALS_FILE).stat().st_mode & 0o777 == 0o600
    again = await demo.team_key(teams, tmp_path)
    assert again == first
    assert _demo_keys(await teams.list_keys(demo.DEMO_TEAM)) == [first.info.key_id]
    status, _, _ = await gateway.request("GET", f"/v1/models/{NANO}", key=again.key)
    assert status == 200


async def test_older_demo_keys_are_revoked_and_a_dead_stored_key_replaced(
    gateway: Gateway, tmp_path: Path
) -> None:
    """What earlier versions left (a new demo key per start), or a wiped Redis."""
    teams: TeamService = gateway.app[TEAMS]
    await teams.create_team(demo.DEMO_TEAM, "Demo team")
    _, older = await teams.create_key(demo.DEMO_TEAM, demo.DEMO_KEY_NAME)
    await teams.create_key(demo.DEMO_TEAM, "the user's own key")
    current = await demo.team_key(teams, tmp_path)
    assert current.key != older
    assert _demo_keys(await teams.list_keys(demo.DEMO_TEAM)) == [current.info.key_id]
    assert len([k for k in await teams.list_keys(demo.DEMO_TEAM) if k.active]) == 2
    status, _, _ = await gateway.request("GET", f"/v1/models/{NANO}", key=older)
    assert status == 401
    await teams.revoke_key(current.info.key_id)
    replaced = await demo.team_key(teams, tmp_path)
    assert replaced.key != current.key
    assert _demo_keys(await teams.list_keys(demo.DEMO_TEAM)) == [replaced.info.key_id]


def test_the_demo_admin_token_is_stored_unless_given(tmp_path: Path) -> None:
    minted = demo.admin_token(tmp_path)
    assert (tmp_path / demo.CREDENTIALS_FILE).stat().st_mode & 0o777 == 0o600
    assert demo.admin_token(tmp_path) == minted
    assert demo.admin_token(tmp_path, "given-by-the-user") == "given-by-the-user"
    assert "given-by-the-user" not in (tmp_path / demo.CREDENTIALS_FILE).read_text()
    assert demo.admin_token(tmp_path) == minted


class DemoRun:
    """One ``python -m gateway demo`` process and what it printed."""

    def __init__(self, process: asyncio.subprocess.Process, text: str) -> None:
        self.process, self.text = process, text

    def value(self, pattern: str) -> str:
        match = re.search(pattern, self.text, re.MULTILINE)
        assert match, self.text
        return match[1]

    async def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # Ctrl-C
        assert await asyncio.wait_for(self.process.wait(), 30) == 0


async def start_demo(data_dir: Path, port: int, home: Path) -> DemoRun:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "share"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "demo", "--port", str(port), "--data-dir", str(data_dir),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    text = ""
    while "Ctrl-C stops it." not in text:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line, text
        text += line.decode()
    return DemoRun(process, text)


@pytest.mark.slow
async def test_the_demo_restarts_with_the_same_token_and_key_and_its_lines_work(
    tmp_path: Path,
) -> None:
    port = free_port()
    runs, costs = [], []
    for _ in range(2):
        run = await start_demo(tmp_path / "demo", port, tmp_path / "home")
        try:
            key = run.value(r"^  team 'demo' key \(\S+\) : (\S+)$")
            token = run.value(r"^  admin token +: (\S+)$")
            submit = run.value(r"curl -s -X POST (\S+) ")
            status_url = run.value(r'curl -s "(\S+/status)" ')
            result_url = run.value(r'curl -s "(\S+/result\?include_cost=true)" ')
            exports = dict(re.findall(r"(\w+)=(\S+)", run.value(r"^  export (.+)$")))
            assert f'-H "Authorization: Bearer {key}"' in run.text
            headers = {"Authorization": f"Bearer {key}"}
            async with aiohttp.ClientSession(headers=headers) as http:
                async with http.post(submit, json={"prompt": "a lighthouse at dawn"}) as resp:
                    assert resp.status == 200, await resp.text()
                    request_id = (await resp.json())["request_id"]
                for _ in range(100):
                    async with http.get(status_url.replace("<request_id>", request_id)) as resp:
                        if (await resp.json())["status"] == "completed":
                            break
                    await asyncio.sleep(0.2)
                async with http.get(result_url.replace("<request_id>", request_id)) as resp:
                    result = await resp.json()
                assert result["status"] == "succeeded" and result["output"]["image"]
                costs.append(result["cost"])
            admin_line = run.value(r"^  export .+\n  (.+ admin teams list)$")
            listing = await asyncio.create_subprocess_exec(
                *shlex.split(admin_line),
                env={**os.environ, **exports},
                stdout=asyncio.subprocess.PIPE,
            )
            teams, _ = await listing.communicate()
            assert listing.returncode == 0 and "Demo team" in teams.decode()
            code, out, err = await run_cli("admin", "--json", "keys", "list", "demo", env=exports)
            assert code == 0, err
            assert exports == {
                "GATEWAY_ADMIN_URL": f"http://127.0.0.1:{port}",
                "GATEWAY_ADMIN_TOKEN": token,
                "KEY": key,  # what the README's walkthrough uses
            }
            assert [k["key_id"] for k in demo_keys(out)] == [key.split("_")[1]]
            runs.append((token, key))
        finally:
            await run.stop()
    assert runs[0] == runs[1]
    assert costs[0] > 0 and costs[1] == 0  # the same request again: served from the kept cache
    assert not (tmp_path / "home" / "share").exists()  # --data-dir is where everything went


def demo_keys(listing: str) -> list[dict[str, str]]:
    return [k for k in json.loads(listing)["keys"] if k["active"] and k["name"] == "demo key"]


def _a_demo(directory: Path, host: str = "127.0.0.1") -> tuple[start.Demo, demo.DemoKey]:
    shown = start._shown_host(host)
    the_demo = start.Demo(
        base=f"http://{shown}:18080",
        directory=directory,
        admin_token="tok en'quoted",
        simulator=SimulatorConfig(token="sim-secret"),
        simulator_port=18081,
    )
    info = ApiKey("abcd1234k1", "demo", "demo", "rcg_abcd1234k1", "now", None, None, None, True)
    return the_demo, demo.DemoKey(info, "rcg_abcd1234k1_secret")


def test_the_demo_announces_its_curl_lines_and_the_admin_exports_ready_to_paste(
    tmp_path: Path,
) -> None:
    the_demo, key = _a_demo(tmp_path)
    text = start._announcement(the_demo, key, "valkey 9")
    assert "runcomfy-gateway demo on http://127.0.0.1:18080 (RunComfy simulator on" in text
    assert f"data directory : {tmp_path.resolve()} (embedded valkey 9)" in text
    assert "curl -s -X POST http://127.0.0.1:18080/v1/models/google/nano-banana/pro/" in text
    assert (
        'curl -s "http://127.0.0.1:18080/v1/requests/<request_id>/result?include_cost=true"' in text
    )
    exports = next(line for line in text.splitlines() if line.startswith("  export "))
    assert shlex.split(exports)[1:] == [
        "GATEWAY_ADMIN_URL=http://127.0.0.1:18080",
        "GATEWAY_ADMIN_TOKEN=tok en'quoted",  # quoted for the shell, pasted as given
        "KEY=rcg_abcd1234k1_secret",
    ]
    assert "sim-secret" not in text  # the simulator's token is the gateway's upstream secret


@pytest.mark.parametrize(
    ("host", "shown", "public_url"),
    [
        ("0.0.0.0", "127.0.0.1", ""),
        ("::", "[::1]", ""),
        ("127.0.0.1", "127.0.0.1", "http://127.0.0.1:18080"),
        ("::1", "[::1]", "http://[::1]:18080"),
    ],
)
def test_the_demo_on_any_address_is_reached_on_loopback_and_names_its_urls_only_when_specific(
    host: str, shown: str, public_url: str, tmp_path: Path
) -> None:
    the_demo, _ = _a_demo(tmp_path, host)
    assert the_demo.base == f"http://{shown}:18080"
    settings = start._settings(the_demo, host, 18080)
    assert settings.upstream_model_api_url == settings.upstream_serverless_url
    assert settings.upstream_model_api_url == "http://127.0.0.1:18081"
    assert settings.upstream_token.get_secret_value() == "sim-secret"
    assert settings.redis_url == "" and settings.data_dir == tmp_path
    assert settings.public_url == public_url


def test_the_demo_help_says_where_its_data_goes_when_nothing_is_set() -> None:
    shown = " ".join(CliRunner().invoke(main, ["demo", "--help"]).output.split())
    assert "demo/ in the data directory (GATEWAY_DATA_DIR; unset, your user's," in shown
    assert "~/.local/share/runcomfy-gateway" in shown
