"""``serve --workers N``: one port, N real worker processes under a supervisor that runs the
embedded Redis once; what a client, Prometheus and an operator see of them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.cli.cpus import available_cpus
from tests.conftest import ADMIN_TOKEN, NANO, SIM_TOKEN, Simulator, free_port

pytestmark = pytest.mark.slow  # real supervisor and worker processes
READY_WITHIN = 60.0  # seconds: N workers importing and starting on a shared 2-core machine


@dataclass
class Served:
    """A running ``serve --workers``: the supervisor process and its log (JSON lines)."""

    process: asyncio.subprocess.Process
    url: str
    log: Path

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    async def wait_for(self, name: str, count: int) -> list[dict[str, Any]]:
        """The first ``count`` events ``name`` once logged (the test fails if they are not)."""
        for _ in range(int(READY_WITHIN / 0.1)):
            found = self.events(name)
            if len(found) >= count or self.process.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert len(found) >= count, self.log.read_text(errors="replace")[-3000:]
        return found

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 60)


def _env(simulator: Simulator, tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {
        **os.environ,
        "GATEWAY_UPSTREAM_MODEL_API_URL": simulator.url,
        "GATEWAY_UPSTREAM_SERVERLESS_URL": simulator.url,
        "GATEWAY_UPSTREAM_TOKEN": SIM_TOKEN,
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_CATALOG_CACHE_SECONDS": "0",
        "GATEWAY_SHUTDOWN_GRACE_SECONDS": "20",
        "GATEWAY_UPSTREAM_SUBMIT_TIMEOUT": "20",
        **settings,
    }
    env.pop("GATEWAY_REDIS_URL", None)
    return env


@pytest.fixture
async def start(simulator: Simulator, tmp_path: Path) -> AsyncIterator[Any]:
    """Start ``serve --workers`` and wait until ``ready`` workers said they are ready."""
    started: list[Served] = []

    async def run(workers: str = "2", ready: int = 2, **settings: str) -> Served:
        port = free_port()
        log = tmp_path / f"serve-{len(started)}.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "serve", "--port", str(port),
                "--workers", workers, env=_env(simulator, tmp_path, **settings),
                stdout=out, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        served = Served(process, f"http://127.0.0.1:{port}", log)
        started.append(served)
        if ready:
            await served.wait_for("gateway_listening", ready)
        return served

    yield run
    for served in started:
        if served.process.returncode is None:
            served.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(served.process.wait(), 60)
            except TimeoutError:
                served.process.kill()
                await served.process.wait()


def _spread() -> aiohttp.ClientSession:
    """A client opening a new connection per request, as many clients would: SO_REUSEPORT
    spreads connections, not requests."""
    connector = aiohttp.TCPConnector(limit=50, force_close=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


def _requests_counted(text: str, route: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "gateway_http_requests":
            return sum(s.value for s in family.samples if s.labels.get("route") == route)
    return 0.0


def _answering_pids(served: Served, route: str) -> set[int]:
    return {int(e["pid"]) for e in served.events("request") if e.get("route") == route}


@pytest.mark.parametrize("metrics_port", [None, "0"], ids=["api-port", "metrics-port"])
async def test_two_workers_answer_on_one_port_and_one_scrape_counts_every_request(
    start: Any, metrics_port: str | None
) -> None:
    served = await start(**({"GATEWAY_METRICS_PORT": metrics_port} if metrics_port else {}))
    [up] = await served.wait_for("supervisor_ready", 1)
    assert up["workers"] == 2 and up["urls"] == [served.url]
    listening = served.events("gateway_listening")
    assert len({e["pid"] for e in listening}) == 2
    assert {tuple(e["urls"]) for e in listening} == {(served.url,)}
    assert {e["redis_path"] for e in listening} == {"pipelined"}  # the embedded Redis: unix://
    sent = 300
    async with _spread() as http:

        async def healthz() -> int:
            async with http.get(f"{served.url}/healthz") as response:
                return response.status

        assert await asyncio.gather(*(healthz() for _ in range(sent))) == [200] * sent
        metrics_url = served.url
        if metrics_port:
            [first, *_] = await served.wait_for("metrics_listener_started", 2)
            metrics_url = f"http://127.0.0.1:{first['port']}"
        async with http.get(f"{metrics_url}/metrics") as response:
            assert response.status == 200
            text = await response.text()
    assert _requests_counted(text, "/healthz") == sent
    assert len(_answering_pids(served, "/healthz")) == 2
    assert await served.stop() == 0


async def test_workers_report_the_supervisors_redis_as_the_embedded_one(start: Any) -> None:
    """The supervisor runs the embedded Redis and hands its workers its URL: /readyz and the
    Redis gauge still say which Redis it is."""
    served = await start()
    async with _spread() as http:
        for _ in range(32):  # new connections, which the kernel deals to both workers
            async with http.get(f"{served.url}/readyz") as response:
                assert (await response.json())["redis_mode"] == "embedded"
        modes: set[str] = set()
        for _ in range(int(READY_WITHIN / 0.1)):  # set by each worker's first Redis probe
            async with http.get(f"{served.url}/metrics") as response:
                text = await response.text()
            [up] = [f for f in text_string_to_metric_families(text) if f.name == "gateway_redis_up"]
            modes = {sample.labels["mode"] for sample in up.samples}
            if modes:
                break
            await asyncio.sleep(0.1)
    assert modes == {"embedded"}
    assert await served.stop() == 0


async def _new_key(http: aiohttp.ClientSession, url: str) -> str:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http.post(f"{url}/admin/v1/teams", json={"team_id": "t"}, headers=admin) as r:
        assert r.status == 201, await r.text()
    async with http.post(f"{url}/admin/v1/teams/t/keys", json={}, headers=admin) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["key"])


async def _until(count: Callable[[], Awaitable[int]], wanted: int) -> None:
    for _ in range(int(READY_WITHIN / 0.05)):
        if await count() >= wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached {wanted}")


async def test_sigterm_lets_every_worker_finish_its_requests_in_flight(
    start: Any, simulator: Simulator
) -> None:
    served = await start()
    in_flight = 16
    await simulator.fault(route="model.submit", action="delay", delay=2.0, times=in_flight)
    async with _spread() as http:
        key = await _new_key(http, served.url)

        async def submit(n: int) -> int:
            body = {"prompt": f"drain {n}"}
            headers = {"Authorization": f"Bearer {key}"}
            async with http.post(
                f"{served.url}/v1/models/{NANO}", json=body, headers=headers
            ) as response:
                return response.status

        submits = [asyncio.create_task(submit(n)) for n in range(in_flight)]
        await _until(lambda: simulator.count("model.submit"), in_flight)  # all held at RunComfy
        served.process.send_signal(signal.SIGTERM)
        statuses = await asyncio.gather(*submits)
    assert statuses == [200] * in_flight
    assert await asyncio.wait_for(served.process.wait(), 60) == 0
    drained = {e["pid"] for e in served.events("gateway_draining")}
    assert drained == {e["pid"] for e in served.events("gateway_listening")}
    answered = {int(e["pid"]) for e in served.events("request") if e.get("route") != "/healthz"}
    assert len(answered) == 2  # the requests in flight were on both workers


async def test_a_killed_worker_is_replaced_and_the_port_keeps_answering(start: Any) -> None:
    served = await start()
    victim = int(served.events("worker_ready")[0]["worker_pid"])
    os.kill(victim, signal.SIGKILL)
    [died] = await served.wait_for("worker_died", 1)
    assert died["worker_pid"] == victim and died["how"] == "signal 9"
    ready = await served.wait_for("worker_ready", 3)
    assert victim not in {e["worker_pid"] for e in ready[2:]}
    async with _spread() as http:
        for _ in range(20):
            async with http.get(f"{served.url}/healthz") as response:
                assert response.status == 200
    assert await served.stop() == 0


async def test_workers_auto_runs_one_per_cpu_the_process_may_use(start: Any) -> None:
    expected = available_cpus()
    served = await start(workers="auto", ready=expected)
    if expected == 1:  # pragma: no cover - a one-CPU machine: one process, no supervisor
        assert not served.events("supervisor_started")
    else:
        [supervisor] = served.events("supervisor_started")
        assert supervisor["workers"] == expected
    assert await served.stop() == 0


async def test_a_worker_that_cannot_start_stops_everything_once(start: Any, tmp_path: Path) -> None:
    """Every worker runs the same configuration: restarting one that cannot start would fail
    for ever. The supervisor says so in one line and exits 1."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\nif '--worker' in sys.argv:\n    sys.exit('worker: cannot start')\n"
    )
    served = await start(ready=0, PYTHONPATH=str(hook))
    assert await asyncio.wait_for(served.process.wait(), 60) == 1
    text = served.log.read_text()
    assert len(served.events("worker_started")) == 2  # each once: nothing restarted
    lines = [line for line in text.splitlines() if line.startswith("cannot start:")]
    assert len(lines) == 1 and "not restarting" in lines[0], text


async def test_workers_stop_when_their_supervisor_is_killed(start: Any, tmp_path: Path) -> None:
    served = await start()
    workers = [int(e["worker_pid"]) for e in served.events("worker_ready")]
    served.process.kill()
    await served.process.wait()
    for _ in range(300):
        alive = [pid for pid in workers if _alive(pid)]
        if not alive:
            break
        await asyncio.sleep(0.1)
    assert not alive, served.log.read_text()[-2000:]
    _stop_left_redis(tmp_path / "data")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone, only not reaped yet
        return stat.read().split()[2] != "Z"


def _stop_left_redis(data_dir: Path) -> None:
    """The embedded Redis outlives a killed supervisor (the next start replaces it)."""
    pidfile = data_dir / "redis.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
