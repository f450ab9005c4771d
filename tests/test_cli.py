"""The command line as an operator uses it. Admin and config commands run in this process
against a real gateway over HTTP; one real ``serve`` process shows what only a process can
(SIGTERM drain, JSON log lines on stdout)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import click
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from gateway.commands import main
from gateway.settings import Settings, settings_table
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
    code, out, err = await cli("limits", "set", "design", "--models", "")
    assert code == 0, err
    assert re.search(r"models\s*│\s*none", out), out  # every model refused, not "-" (no limit)
    code, out, err = await cli("limits", "set", "design", "--key", key_id, "--max-concurrent", "2")
    assert code != 0 and "team-wide only" in err
    code, out, err = await cli("usage", "design")
    assert code == 0, err
    assert "Usage of design by day" in out and "hit rate" in out
    assert "(none)" in out and "7 days without requests left out (--json has them)." in out
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


async def test_usage_shows_the_days_with_requests_and_counts_the_others(cli: Cli) -> None:
    await cli("teams", "create", "design")
    _, out, _ = await cli("--json", "keys", "create", "design")
    key = json.loads(out)["key"]
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{cli.url}/v1/models/{NANO}",
            json={"prompt": "a lighthouse"},
            headers={"Authorization": f"Bearer {key}"},
        ) as resp,
    ):
        assert resp.status == 200
    _, out, _ = await cli("--json", "usage", "design")
    days = json.loads(out)["by_day"]
    active = [d["day"] for d in days if d.get("requests")]
    assert len(active) == 1 and len(days) == 7
    code, out, err = await run_cli(
        "admin", "--url", cli.url, "--token", ADMIN_TOKEN, "usage", "design",
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert code == 0, err
    shown = set(re.findall(r"\d{4}-\d{2}-\d{2}", out.split("By model")[0]))
    assert shown == set(active)
    assert "6 days without requests left out" in out


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


def _admin_commands() -> list[list[str]]:
    """Every command line under ``admin``, groups included, as the words after the program."""
    found: list[list[str]] = []

    def walk(command: click.Command, words: list[str]) -> None:
        found.append(words)
        if isinstance(command, click.Group):
            for name, sub in sorted(command.commands.items()):
                walk(sub, [*words, name])

    walk(main.commands["admin"], ["admin"])
    return found


async def test_admin_cli_takes_json_url_and_token_anywhere_on_the_command_line(cli: Cli) -> None:
    await cli("teams", "create", "ml")
    await cli("keys", "create", "ml", "--name", "ci")
    for words in (
        ["--json", "keys", "list", "ml"],
        ["keys", "--json", "list", "ml"],
        ["keys", "list", "--json", "ml"],
        ["keys", "list", "ml", "--json"],
    ):
        code, out, err = await cli(*words)
        assert code == 0, (words, err)
        assert [k["name"] for k in json.loads(out)["keys"]] == ["ci"], words
    code, out, err = await cli("limits", "set", "ml", "--daily", "5", "--json")
    assert code == 0, err
    assert json.loads(out)["daily_requests"] == 5
    code, out, _ = await cli("keys", "list", "ml")
    assert code == 0 and "Keys of ml" in out and not out.lstrip().startswith("{")
    nowhere = f"http://127.0.0.1:{free_port()}"
    code, out, err = await run_cli(
        "admin", "--url", nowhere, "--token", "wrong",
        "keys", "list", "ml", "--url", cli.url, "--token", ADMIN_TOKEN, "--json",
    )  # fmt: skip
    assert code == 0, err
    assert [k["name"] for k in json.loads(out)["keys"]] == ["ci"]
    code, _, err = await run_cli("admin", "whoami", "--url", nowhere, "--token", ADMIN_TOKEN)
    assert code == 1 and f"cannot reach the gateway at {nowhere}" in err


async def test_every_admin_help_works_without_a_token_or_a_gateway_and_reads_cleanly() -> None:
    nowhere = {"GATEWAY_ADMIN_URL": f"http://127.0.0.1:{free_port()}", "GATEWAY_ADMIN_TOKEN": ""}
    commands = _admin_commands()
    assert len(commands) > 30 and ["admin", "pricing", "set-model"] in commands
    for words in commands:
        code, out, err = await run_cli(*words, "--help", env=nowhere)
        assert code == 0, (words, err)
        assert "--json" in out, words  # every command takes it, wherever it is written
        assert not out.split("\n\n")[1].startswith("Options:"), words  # it says what it does
        if "Commands:" in out:  # and its first sentence is short enough to be listed whole
            assert "..." not in out.split("Commands:")[1], words
        assert "%%" not in out and "\\b" not in out, words  # click shows help text verbatim
    _, out, _ = await run_cli("admin", "--help", env=nowhere)
    assert "env var: GATEWAY_ADMIN_URL" in out and "env var: GATEWAY_ADMIN_TOKEN" in out
    _, out, _ = await run_cli("admin", "limits", "set", "--help", env=nowhere)
    assert "50/80/100 % of the budget" in out
    code, _, err = await run_cli("admin", "teams", "list", env=nowhere)
    assert code == 2 and "an admin token is needed" in err


def test_serve_help_shows_each_options_setting_and_its_real_default() -> None:
    out = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200).output
    fields = Settings.model_fields
    for option, name in (
        ("host", "GATEWAY_HOST"),
        ("port", "GATEWAY_PORT"),
        ("role", "GATEWAY_ROLE"),
    ):
        line = next(line for line in out.splitlines() if line.strip().startswith(f"--{option}"))
        assert f"{name}; default {fields[option].default}" in line, line
    assert "GATEWAY_WORKERS; default 1" in out and fields["workers"].default == 1


@pytest.mark.parametrize("columns", ["40", "80", "120"])
async def test_admin_tables_never_cut_an_id_at_any_terminal_width(cli: Cli, columns: str) -> None:
    await cli("teams", "create", "design-and-research-team")
    _, out, _ = await cli("--json", "keys", "create", "design-and-research-team", "--name", "ci")
    key = json.loads(out)
    await cli("keys", "rotate", key["key_id"], "--grace", "1h")
    shown = [
        ["keys", "list", "design-and-research-team"],
        ["keys", "show", key["key_id"]],
        ["audit", "--team", "design-and-research-team"],
        ["limits", "show", "design-and-research-team"],
    ]
    _, out, _ = await cli("--json", "keys", "list", "design-and-research-team")
    ids = [k["key_id"] for k in json.loads(out)["keys"]] + [
        k["prefix"] for k in json.loads(out)["keys"]
    ]
    for words in shown:
        code, out, err = await run_cli(
            "admin", "--url", cli.url, "--token", ADMIN_TOKEN, *words, env={"COLUMNS": columns}
        )
        assert code == 0, err
        assert "…" not in out, (words, out)
        if words[0] == "keys":
            for id_ in ids if words[1] == "list" else ids[:1]:
                assert id_ in out, (words, id_, out)
        if words[0] == "audit":
            assert "key.rotate" in out and "team.create" in out


@pytest.mark.parametrize("columns", ["40", "80", "200"])
async def test_an_empty_list_says_so_at_any_terminal_width(cli: Cli, columns: str) -> None:
    await cli("teams", "create", "ml")
    for words in (["admins", "list"], ["keys", "list", "ml"]):
        code, out, err = await run_cli(
            "admin", "--url", cli.url, "--token", ADMIN_TOKEN, *words, env={"COLUMNS": columns}
        )
        assert code == 0, err
        assert "(none)" in out, (words, out)


async def test_key_and_token_commands_take_the_prefix_or_the_whole_secret_as_the_id(
    cli: Cli,
) -> None:
    await cli("teams", "create", "ml")
    _, out, _ = await cli("--json", "keys", "create", "ml")
    key = json.loads(out)
    code, out, err = await cli("--json", "keys", "show", key["prefix"])
    assert code == 0, err
    assert json.loads(out)["key_id"] == key["key_id"]
    code, out, err = await cli(
        "--json", "limits", "set", "ml", "--key", key["prefix"], "--daily", "3"
    )
    assert code == 0, err
    assert json.loads(out)["keys"][key["key_id"]]["daily_requests"] == 3
    code, out, err = await cli("--json", "dedup", "set", "ml", "--key", f"{key['prefix']}=off")
    assert code == 0, err
    assert json.loads(out)["keys"] == {key["key_id"]: "off"}
    for command in ("show", "rotate", "revoke"):  # the team first, as for keys list
        code, _, err = await cli("keys", command, "ml", key["key_id"])
        assert code == 2 and f"keys {command} KEY_ID): a key's id names its team" in err, err
    code, out, err = await cli("--json", "keys", "revoke", key["key"])  # a leaked key, pasted
    assert code == 0, err
    assert json.loads(out)["key_id"] == key["key_id"] and key["key"] not in out
    _, out, _ = await cli("--json", "admins", "create", "vic")
    token = json.loads(out)["token"]
    code, out, err = await cli("--json", "admins", "revoke", token)
    assert code == 0, err
    assert json.loads(out)["revoked_at"] and token not in out


async def test_admin_cli_prints_why_the_api_refused_a_change(cli: Cli) -> None:
    await cli("teams", "create", "ml")
    code, _, err = await cli("limits", "set", "ml", "--rate-per-minute", "0", "--burst", "0")
    assert code == 1
    lines = err.splitlines()
    assert lines[0] == "Error: 422: The request body failed validation."
    assert any(line.strip().startswith("rate_per_minute: Input should be") for line in lines)
    assert any(line.strip().startswith("rate_burst: Input should be") for line in lines)
    code, _, err = await cli("keys", "create", "ml", "--expires-at", "tomorrow")
    assert code == 1 and "expires_at:" in err


@pytest.mark.parametrize(
    ("status", "content_type", "body", "shown"),
    [
        (
            502,
            "text/html",
            "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
            "<hr><center>nginx</center></body></html>",
            "502 Bad Gateway 502 Bad Gateway nginx",
        ),
        (502, "text/plain", "", "empty body"),
        (200, "text/html", "<p>Please log in to the corporate proxy</p>", "Please log in"),
    ],
)
async def test_admin_cli_says_what_came_back_when_it_is_not_the_gateways_json(
    status: int, content_type: str, body: str, shown: str
) -> None:
    async def proxy_page(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy_page)
    async with TestServer(app) as proxy:
        url = str(proxy.make_url("")).rstrip("/")
        code, out, err = await run_cli("admin", "--url", url, "--token", "t", "teams", "list")
    assert code == 1 and out == ""
    assert f"Error: {status}" in err and content_type in err and shown in err
    assert "not a JSON answer" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


async def test_admin_cli_says_in_one_line_when_the_gateway_cannot_be_reached() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = await run_cli("admin", "--url", url, "--token", "t", "teams", "list")
    assert code == 1
    assert err.startswith(f"Error: cannot reach the gateway at {url} (")
    assert len(err.splitlines()) == 1
    code, _, err = await run_cli("admin", "--url", "localhost:8080", "--token", "t", "whoami")
    assert code == 2 and "give the gateway's URL, e.g. http://127.0.0.1:8080" in err


async def test_admin_cli_clears_the_budget_period_back_to_month(cli: Cli) -> None:
    await cli("teams", "create", "ml")
    code, out, err = await cli("--json", "limits", "set", "ml", "--budget", "10", "--period", "day")
    assert code == 0, err
    assert json.loads(out)["budget_period"] == "day"
    for spelling in ("budget_period", "period", "budget-period"):
        await cli("limits", "set", "ml", "--period", "week")
        code, out, err = await cli("--json", "limits", "set", "ml", "--clear", spelling)
        assert code == 0, (spelling, err)
        limits = json.loads(out)
        assert limits["budget_period"] == "month" and limits["budget_usd"] == 10, spelling
    code, _, err = await cli("limits", "set", "ml", "--clear", "budget_perod")
    assert code == 2 and "'budget_perod' is not a limit" in err
    code, _, err = await cli("limits", "set", "ml", "--period", "day", "--clear", "period")
    assert code == 2 and "set or cleared, not both: budget_period" in err
    code, _, err = await cli("limits", "set", "ml", "--key", "k", "--clear", "budget_period")
    assert code == 2 and "team-wide only, not per key: budget_period" in err


def _installed_as(name: str) -> str:
    """The console script ``name``'s entry point, as pyproject.toml declares it."""
    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    return str(project["project"]["scripts"][name])


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o"), ("zsh", "#compdef"), ("fish", "complete --no-files")],
)
def test_shell_completion_scripts_come_from_the_installed_command(shell: str, marker: str) -> None:
    assert (
        _installed_as("runcomfy-gateway") == "gateway.commands:main"
    )  # the name docs/admin.md uses
    env = {"_RUNCOMFY_GATEWAY_COMPLETE": f"{shell}_source"}
    result = CliRunner().invoke(main, [], prog_name="runcomfy-gateway", env=env)
    assert result.exit_code == 0 and marker in result.output
    assert "_RUNCOMFY_GATEWAY_COMPLETE" in result.output


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("runcomfy-gateway admin ke", "plain,keys"),
        ("runcomfy-gateway admin keys list ml --j", "plain,--json"),
        ("runcomfy-gateway admin limits set ml --per", "plain,--period"),
    ],
)
def test_completion_offers_commands_and_options_without_a_token_or_gateway(
    line: str, offered: str
) -> None:
    words = line.split()
    env = {
        "_RUNCOMFY_GATEWAY_COMPLETE": "bash_complete",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
        "GATEWAY_ADMIN_TOKEN": "",
        "GATEWAY_ADMIN_URL": f"http://127.0.0.1:{free_port()}",
    }
    result = CliRunner().invoke(main, [], prog_name="runcomfy-gateway", env=env)
    assert result.exit_code == 0
    assert offered in result.output.splitlines()


async def test_serve_runs_as_a_process_drains_on_sigterm_and_logs_json_lines(
    simulator: Simulator, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """The subprocess smoke test: ``python -m gateway serve`` as an operator starts it. It says
    where it listens once it has started; a request in flight when SIGTERM arrives still gets its
    answer, the process exits 0, and stdout holds one JSON object per line (request and admin
    events) with no key or token in it."""
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
    [listening] = [e for e in events if e.get("event") == "gateway_listening"]
    assert listening["urls"] == [url]
    assert events.index(listening) > [e.get("event") for e in events].index("gateway_started")
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
