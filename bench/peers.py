"""Peer gateways measured beside the gateway: LiteLLM's proxy and Portkey's open-source gateway.

Each forwards a chat completion to the bench's OpenAI-compatible stub (``servers.py --mode
openai``), which answers from memory as the simulator does, so a peer's latency over
direct -> stub is what the peer itself adds, comparable with the gateway's over direct ->
simulator. Neither is vendored or committed: each is installed on first use, at the version
pinned here, into a cache directory outside the repository (``BENCH_PEERS_DIR``, default
``$XDG_CACHE_HOME/runcomfy-gateway-bench/peers``): LiteLLM with pip into its own virtualenv (its
pins conflict with the gateway's), Portkey with npm, run by the machine's Node.js. A peer that
cannot be installed or started raises :class:`PeerUnavailable` saying why, and the benchmark
prints that in its row instead of a measurement.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from procs import Proc, free_port, http, wait_http

# The newest whose [proxy] extra resolved from the package index here: 1.110 needs
# ``litellm-proxy``, 1.108.8 to 1.109 releases of its extras the index did not have.
LITELLM_VERSION = "1.108.7"
PORTKEY_VERSION = "1.15.2"
MASTER_KEY = "sk-bench-master-key"  # LiteLLM's master key: local benchmark only
STUB_KEY = "sk-bench-stub"  # what the peers send upstream; the stub does not check it
CHAT_MODEL = "bench-model"
INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 120.0  # LiteLLM imports for ~20-40 s on a busy 2-core machine

Spawn = Callable[[str, list[str], dict[str, str] | None], Proc]


class PeerUnavailable(Exception):
    """The peer could not be installed or started; the message says why."""


@dataclass(frozen=True)
class LoadTarget:
    """Where the load generator sends a chat completion, and with which headers."""

    url: str
    headers: dict[str, str]


def chat_body() -> str:
    """A small chat completion request, distinct per request (``%%I%%``, see loadgen.py)."""
    return json.dumps(
        {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Say hello %%I%%"}]}
    )


def direct_target(stub_url: str) -> LoadTarget:
    return LoadTarget(
        f"{stub_url}/v1/chat/completions",
        {"Authorization": f"Bearer {STUB_KEY}", "Content-Type": "application/json"},
    )


def cache_dir() -> Path:
    explicit = os.environ.get("BENCH_PEERS_DIR")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "runcomfy-gateway-bench" / "peers"


def _run(argv: list[str], log: Path, cwd: Path | None = None) -> None:
    with open(log, "ab") as out:
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, timeout=INSTALL_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeerUnavailable(f"install failed: {type(exc).__name__}: {exc}") from None
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise PeerUnavailable(f"install failed (exit {done.returncode}): {tail[0][:200]}")


class Peer:
    """One peer: where it is installed, how it is installed, started and loaded."""

    name = ""
    label = ""
    version = ""

    @property
    def home(self) -> Path:
        return cache_dir() / f"{self.name}-{self.version}"

    def installed(self) -> bool:
        return (self.home / ".installed").exists()

    def install(self) -> None:
        """Install into ``home`` unless a finished install is there (``.installed``)."""
        if self.installed():
            return
        if self.home.exists():
            shutil.rmtree(self.home)  # an unfinished install: start over
        self.home.mkdir(parents=True)
        self._install(self.home / "install.log")
        (self.home / ".installed").write_text(self.version + "\n")

    def _install(self, log: Path) -> None:
        raise NotImplementedError

    def command(self, work: Path, port: int, stub_url: str) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def health_path(self) -> str:
        raise NotImplementedError

    def runtime(self) -> str:
        """What the peer runs on (recorded with its results)."""
        raise NotImplementedError

    def target(self, port: int, stub_url: str) -> LoadTarget:
        raise NotImplementedError

    def start(self, spawn: Spawn, work: Path, stub_url: str) -> tuple[Proc, LoadTarget]:
        """Install if needed, start, wait until healthy and one chat completion comes back."""
        self.install()
        port = free_port()
        argv, env = self.command(work, port, stub_url)
        proc = spawn(self.name, argv, env)
        try:
            wait_http(f"http://127.0.0.1:{port}{self.health_path()}", proc, START_TIMEOUT_S)
            target = self.target(port, stub_url)
            body = json.loads(chat_body().replace("%%I%%", "probe"))
            status, _, answer = http("POST", target.url, body, target.headers, timeout=60)
            if status != 200 or not isinstance(answer, dict) or "choices" not in answer:
                raise PeerUnavailable(f"probe answered {status}: {str(answer)[:200]}")
        except Exception as exc:
            proc.stop()
            if isinstance(exc, PeerUnavailable):
                raise
            raise PeerUnavailable(f"did not start: {exc}") from None
        return proc, target


class LiteLLM(Peer):
    """LiteLLM's proxy: one model routed to the stub as an OpenAI-compatible provider, a master
    key, no database, the bundled price map (no remote fetch), one worker."""

    name = "litellm"
    label = f"LiteLLM proxy {LITELLM_VERSION} -> stub"
    version = LITELLM_VERSION

    def _install(self, log: Path) -> None:
        venv = self.home / "venv"
        _run([sys.executable, "-m", "venv", str(venv)], log)
        _run([str(venv / "bin" / "pip"), "install", f"litellm[proxy]=={self.version}"], log)

    def command(self, work: Path, port: int, stub_url: str) -> tuple[list[str], dict[str, str]]:
        config = work / "litellm.yaml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "model_list": [
                        {
                            "model_name": CHAT_MODEL,
                            "litellm_params": {
                                "model": f"openai/{CHAT_MODEL}",
                                "api_base": f"{stub_url}/v1",
                                "api_key": STUB_KEY,
                            },
                        }
                    ],
                    "general_settings": {"master_key": MASTER_KEY},
                    "litellm_settings": {"telemetry": False},
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", NO_PROXY="*")
        argv = [str(self.home / "venv" / "bin" / "litellm"), "--config", str(config)]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
        return argv, env

    def health_path(self) -> str:
        return "/health/liveliness"

    def runtime(self) -> str:
        return f"CPython {platform.python_version()} (the benchmark's), 1 worker"

    def target(self, port: int, stub_url: str) -> LoadTarget:
        return LoadTarget(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
        )


class Portkey(Peer):
    """Portkey's gateway on Node.js, headless; the provider and the stub's address come with
    each request (``x-portkey-provider``, ``x-portkey-custom-host``), as its README shows.
    Version 1.15.2 has no host option: it listens on every interface while measured."""

    name = "portkey"
    label = f"Portkey gateway {PORTKEY_VERSION} -> stub"
    version = PORTKEY_VERSION

    def _install(self, log: Path) -> None:
        npm = shutil.which("npm")
        if not shutil.which("node") or not npm:
            raise PeerUnavailable("Node.js (node and npm) not installed")
        package = f"@portkey-ai/gateway@{self.version}"
        _run([npm, "install", "--no-audit", "--no-fund", "--prefix", ".", package], log, self.home)

    def command(self, work: Path, port: int, stub_url: str) -> tuple[list[str], dict[str, str]]:
        node = shutil.which("node")
        if not node:
            raise PeerUnavailable("Node.js not installed")
        script = (
            self.home / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
        )
        return [node, str(script), f"--port={port}", "--headless"], dict(os.environ)

    def health_path(self) -> str:
        return "/"

    def runtime(self) -> str:
        node = shutil.which("node")
        if not node:
            return "Node.js not installed"
        done = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
        return f"Node.js {done.stdout.strip()}"

    def target(self, port: int, stub_url: str) -> LoadTarget:
        return LoadTarget(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            {
                "Authorization": f"Bearer {STUB_KEY}",
                "Content-Type": "application/json",
                "x-portkey-provider": "openai",
                "x-portkey-custom-host": f"{stub_url}/v1",
            },
        )


PEERS: tuple[Peer, ...] = (LiteLLM(), Portkey())
