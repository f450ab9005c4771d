"""What ``serve`` and ``demo`` tell the person who starts them: where the gateway listens, a
taken port in one line, where the data lives (and how to bring an older ``./data`` along), and
what does not work without an admin token."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from asyncio.subprocess import Process
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from gateway.settings import Settings
from gateway.web.serving import (
    KERNEL_BALANCES,
    ListenError,
    claim_data_dir,
    listen,
    listen_for_workers,
    log_listening,
    redis_path,
    urls,
    warn_about_old_data,
)
from tests.conftest import (
    ADMIN_TOKEN,
    SIM_TOKEN,
    Simulator,
    free_port,
    on_single_and_cluster,
    run_cli,
)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "way_out"),
    [
        ("serve", "--port or GATEWAY_PORT"),
        ("demo", "--port or GATEWAY_PORT"),
        ("simulator", "another port with --port."),
    ],
)
async def test_a_taken_port_is_one_line_naming_it_and_the_way_out(
    command: str, way_out: str, taken_port: int, tmp_path: Path
) -> None:
    """Before: a 33-line traceback (after the embedded Redis had started). Now nothing starts."""
    env = {"GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    code, out, err = await run_cli(command, "--port", str(taken_port), env=env)
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert f"127.0.0.1:{taken_port}" in err and "already in use" in err
    assert way_out in err
    assert not (tmp_path / "data").exists()  # refused before anything was started


@pytest.mark.parametrize("command", ["serve", "demo"])
async def test_a_data_dir_in_use_by_a_running_gateway_is_one_line_and_left_alone(
    command: str, tmp_path: Path
) -> None:
    """Two gateways on one data directory: the second would stop the first one's embedded
    Redis, taking it for a crashed gateway's leftover. Now the second refuses to start."""
    data_dir = tmp_path / "data"
    held = claim_data_dir(data_dir if command == "serve" else data_dir / "demo")
    assert held is not None
    try:
        env = {"GATEWAY_DATA_DIR": str(data_dir), "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}
        code, out, err = await run_cli(command, "--port", str(free_port()), env=env)
        assert code != 0 and out == ""
        assert len(err.strip().splitlines()) == 1, err
        assert "is in use by another gateway" in err and f"(process {os.getpid()})" in err
        assert "GATEWAY_DATA_DIR" in err
        assert not (data_dir / "appendonlydir").exists()
    finally:
        held.close()
    again = claim_data_dir(data_dir)  # the lock goes with its holder
    assert again is not None
    again.close()


def test_an_address_of_another_machine_is_refused_with_the_option_to_change() -> None:
    with pytest.raises(ListenError) as refused:
        listen("192.0.2.1", 0)  # TEST-NET-1: never an address of this machine
    assert "192.0.2.1" in str(refused.value) and "GATEWAY_HOST" in str(refused.value)


def test_the_listening_urls_name_the_bound_ports() -> None:
    sockets = listen("127.0.0.1", 0)
    try:
        port = sockets[0].getsockname()[1]
        assert port != 0
        assert urls(sockets) == [f"http://127.0.0.1:{port}"]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # already listening: a client waits in the backlog while the gateway starts
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.skipif(not KERNEL_BALANCES, reason="per-worker sockets need Linux's SO_REUSEPORT")
def test_each_worker_gets_its_own_socket_on_one_port() -> None:
    groups = listen_for_workers("127.0.0.1", 0, 3)
    try:
        ports = {group[0].getsockname()[1] for group in groups}
        assert len(groups) == 3 and len(ports) == 1 and 0 not in ports
        assert len({group[0].fileno() for group in groups}) == 3
        with socket.create_connection(("127.0.0.1", ports.pop()), timeout=5):
            pass
    finally:
        for group in groups:
            for sock in group:
                sock.close()


@pytest.mark.skipif(not KERNEL_BALANCES, reason="per-worker sockets need Linux's SO_REUSEPORT")
def test_workers_refuse_a_port_another_program_shares_out_with_so_reuseport() -> None:
    """SO_REUSEPORT would let the workers join that program's sockets and take half its
    connections; the port is refused as taken instead."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(ListenError, match="already in use"):
            listen_for_workers("127.0.0.1", port, 2)


@pytest.mark.parametrize(
    ("url", "pipelined", "path"),
    [
        ("redis://127.0.0.1:6379/0", True, ("pipelined", "plain redis:// or unix:// URL")),
        ("unix:///data/redis.sock?db=0", True, ("pipelined", "plain redis:// or unix:// URL")),
        ("rediss://cache:6380/0", False, ("redis-py", "TLS URL")),
        ("redis+cluster://a:7000,b:7001", False, ("redis-py", "Cluster URL")),
        ("rediss+sentinel://s:26379/main", False, ("redis-py", "TLS Sentinel URL")),
    ],
)
def test_the_redis_path_names_the_client_and_why(
    url: str, pipelined: bool, path: tuple[str, str]
) -> None:
    assert redis_path(url, pipelined) == path


@on_single_and_cluster
async def test_the_listening_line_says_which_redis_client_serves(
    gateway_factory: Any, redis_url: str
) -> None:
    gateway = await gateway_factory()
    with capture_logs() as events:
        await log_listening([])(gateway.app)
    [line] = [e for e in events if e["event"] == "gateway_listening"]
    cluster = redis_url.startswith("redis+cluster")
    assert line["redis_path"] == ("redis-py" if cluster else "pipelined")
    assert line["redis_path_why"] == ("Cluster URL" if cluster else "plain redis:// or unix:// URL")


async def test_a_workers_setting_that_is_not_a_count_is_one_line(tmp_path: Path) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_WORKERS": "0"}
    code, out, err = await run_cli("serve", "--port", "0", env=env)
    assert (code, out) == (2, "")
    assert err == (
        "configuration error: GATEWAY_WORKERS: Value error, must be at least 1 (or auto)\n"
    )
    code, _, err = await run_cli("serve", "--workers", "many", env=env)
    assert code == 2 and "GATEWAY_WORKERS" in err and "whole number" in err
    assert not (tmp_path / "data").exists()


def test_the_data_dir_is_the_users_not_the_working_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    if sys.platform == "linux":
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
        assert Settings().data_dir == tmp_path / "xdg" / "runcomfy-gateway"
    assert Settings().data_dir.is_absolute()
    monkeypatch.setenv("GATEWAY_DATA_DIR", "/srv/gateway")
    assert Settings().data_dir == Path("/srv/gateway")


def _old_data(directory: Path) -> None:
    (directory / "appendonlydir").mkdir(parents=True)
    (directory / "appendonlydir" / "appendonly.aof.1.base.rdb").write_bytes(b"teams")


def _warnings(data_dir: Path, old: Path) -> list[MutableMapping[str, Any]]:
    with capture_logs() as events:
        warn_about_old_data(data_dir, old)
    return [e for e in events if e["event"] == "old_data_dir_found"]


def test_an_older_versions_data_is_pointed_out_with_the_command_that_moves_it(
    tmp_path: Path,
) -> None:
    old, new = tmp_path / "checkout" / "data", tmp_path / "home data" / "runcomfy-gateway"
    _old_data(old)
    new.mkdir(parents=True)
    (new / "redis.log").write_text("started once, empty")  # what the first start leaves
    [warning] = _warnings(new, old)
    assert warning["log_level"] == "warning"
    assert warning["old_data_dir"] == str(old) and warning["data_dir"] == str(new)
    command = warning["advice"].split("run: ", 1)[1]
    assert (old / "appendonlydir").is_dir()  # nothing moved without the user's word
    subprocess.run(["/bin/sh", "-c", command], check=True)
    assert (new / "appendonlydir" / "appendonly.aof.1.base.rdb").read_bytes() == b"teams"
    assert not old.exists() and (tmp_path / "home data" / "runcomfy-gateway.empty").is_dir()
    assert _warnings(new, old) == []  # moved: nothing more to say


def test_no_hint_without_old_data_or_when_the_new_directory_has_its_own(tmp_path: Path) -> None:
    old, new = tmp_path / "data", tmp_path / "new"
    assert _warnings(new, old) == []  # no ./data
    _old_data(old)
    _old_data(new)
    assert _warnings(new, old) == []  # the new one is in use: ./data is the user's business
    assert _warnings(old, old) == []  # GATEWAY_DATA_DIR=./data: that is the data


async def test_serve_without_an_admin_token_warns_what_does_not_work_and_how_to_set_it(
    gateway_factory: Any,
) -> None:
    with capture_logs() as events:
        await gateway_factory(admin_token=SecretStr(""))
    [warning] = [e for e in events if e["event"] == "admin_token_unset"]
    assert warning["log_level"] == "warning"
    assert "GATEWAY_ADMIN_TOKEN" in warning["advice"] and "nobody can create" in warning["advice"]
    with capture_logs() as events:
        await gateway_factory()
    assert not [e for e in events if e["event"] == "admin_token_unset"]


async def _serve(env: dict[str, str], cwd: Path, port: int, log: Path) -> Process:
    """``python -m gateway serve`` started from ``cwd``, once it says it listens."""
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--port", str(port),
            env=env, cwd=cwd, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    text = ""
    for _ in range(600):
        text = await asyncio.to_thread(log.read_text)
        if "gateway_listening" in text or process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    assert "gateway_listening" in text, text
    return process


async def _stop(process: Process) -> None:
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 30) == 0


@pytest.mark.slow
async def test_an_upgrade_moves_the_old_data_by_the_printed_command_and_keeps_the_teams(
    simulator: Simulator, tmp_path: Path
) -> None:
    """As someone who ran an earlier version from a checkout (data in ./data) would: start
    the new one there with the console log, paste the command it prints, start again."""
    checkout, port = tmp_path / "checkout", free_port()
    checkout.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_DATA_HOME=str(tmp_path / "xdg"),
        GATEWAY_UPSTREAM_MODEL_API_URL=simulator.url,
        GATEWAY_UPSTREAM_SERVERLESS_URL=simulator.url,
        GATEWAY_UPSTREAM_TOKEN=SIM_TOKEN,
        GATEWAY_LOG_FORMAT="console",
    )
    admin = {"GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN, "GATEWAY_ADMIN_URL": f"http://127.0.0.1:{port}"}
    # an earlier version: its data directory was ./data
    earlier = await _serve(
        {**env, **admin, "GATEWAY_DATA_DIR": "data"}, checkout, port, tmp_path / "a"
    )
    try:
        assert (await run_cli("admin", "teams", "create", "design", env=admin))[0] == 0
    finally:
        await _stop(earlier)
    # this version, with neither GATEWAY_DATA_DIR nor GATEWAY_ADMIN_TOKEN
    await _stop(await _serve(env, checkout, port, tmp_path / "b"))
    text = (tmp_path / "b").read_text()
    [listening] = [line for line in text.splitlines() if "gateway_listening" in line]
    assert f"urls=['http://127.0.0.1:{port}']" in listening and "redis_path=pipelined" in listening
    assert "admin_token_unset" in text and "nobody can create teams or keys" in text
    assert f"data_dir={tmp_path / 'xdg' / 'runcomfy-gateway'}" in text
    match = re.search(r"old_data_dir_found .*run: (mv [^']+)'", text)
    assert match, text
    moving = await asyncio.create_subprocess_exec("/bin/sh", "-c", match[1])
    assert await moving.wait() == 0
    # and again, the teams of ./data are there
    process = await _serve({**env, **admin}, tmp_path, port, tmp_path / "c")
    try:
        code, out, _ = await run_cli("admin", "--json", "teams", "list", env=admin)
        assert code == 0 and [t["team_id"] for t in json.loads(out)["teams"]] == ["design"]
    finally:
        await _stop(process)
    assert "old_data_dir_found" not in (tmp_path / "c").read_text()
    assert not (checkout / "data").exists()


def test_workers_on_a_taken_port_stop_serve_with_one_line() -> None:
    """``serve --workers 2`` on a port another program holds: click's one-line error."""
    import click

    from gateway.cli import launch

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(click.ClickException, match="already in use"):
            launch.bind_workers("127.0.0.1", port, 2)


def test_serve_starts_its_log_with_the_hint_about_an_older_versions_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """The hint comes through the log as configured, and no secret of the settings is in it."""
    import structlog

    from gateway.cli import launch

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dump.rdb").write_bytes(b"REDIS")
    monkeypatch.chdir(tmp_path)
    settings = Settings(
        data_dir=tmp_path / "new",
        log_format="json",
        upstream_token=SecretStr("upstream-secret-value"),
        admin_token=SecretStr("admin-secret-value-0123456789abcdef"),
    )
    try:
        launch.start_logging(settings)
        structlog.get_logger("test").info("token", value="upstream-secret-value")
    finally:
        structlog.reset_defaults()
    out = capsys.readouterr().out
    events = [json.loads(line)["event"] for line in out.splitlines()]
    assert events[0] == "old_data_dir_found"
    assert "upstream-secret-value" not in out
