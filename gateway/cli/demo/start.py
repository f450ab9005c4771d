"""The demo's one process: a gateway on embedded Redis, the simulator as its upstream on a
loopback port, and a team key, announced with commands people can paste."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import click
from aiohttp import web
from pydantic import SecretStr

from gateway.cli import launch
from gateway.cli.common import admin_variables
from gateway.cli.config import load_settings
from gateway.cli.demo import credentials
from gateway.common.records import record
from gateway.observability.logs import configure_logging
from gateway.settings import Settings
from gateway.simulator import SimulatorConfig, create_simulator_app
from gateway.web.app import create_app
from gateway.web.appkeys import EMBEDDED_REDIS, TEAMS
from gateway.web.serving import OLD_DATA_DIR, warn_about_old_data


@record
class Demo:
    """Where this demo runs: what the announcement tells people and the settings are made of."""

    base: str
    """The gateway's URL as a local client reaches it."""
    directory: Path
    admin_token: str
    simulator: SimulatorConfig
    simulator_port: int


def run_demo(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Bind both listeners, claim the data directory, then serve until a signal."""
    base_settings = load_settings(host=host, port=port)
    sockets = launch.bind(base_settings.host, base_settings.port)
    sim_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sim_sock.bind(("127.0.0.1", 0))
    directory = data_dir if data_dir is not None else base_settings.data_dir / "demo"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    claimed = launch.claim(directory)
    bound_port = sockets[0].getsockname()[1]
    demo = Demo(
        base=f"http://{_shown_host(base_settings.host)}:{bound_port}",
        directory=directory,
        admin_token=credentials.admin_token(directory, os.environ.get("GATEWAY_ADMIN_TOKEN", "")),
        simulator=SimulatorConfig(token=secrets.token_urlsafe(16)),
        simulator_port=sim_sock.getsockname()[1],
    )
    settings = _settings(demo, base_settings.host, bound_port)
    configure_logging(settings.log_level, settings.log_format, launch.secrets_of(settings))
    warn_about_old_data(directory, OLD_DATA_DIR / "demo")
    app = create_app(settings)
    app.cleanup_ctx.insert(0, _simulator_ctx(demo.simulator, sim_sock))
    app.on_startup.append(_announce(demo))
    launch.run(app, settings, sockets)
    del claimed  # held until here


def _settings(demo: Demo, host: str, port: int) -> Settings:
    upstream = f"http://127.0.0.1:{demo.simulator_port}"
    specific = host not in ("", "0.0.0.0", "::")
    return load_settings(
        upstream_model_api_url=upstream,
        upstream_serverless_url=upstream,
        upstream_token=SecretStr(demo.simulator.token),
        admin_token=SecretStr(demo.admin_token),
        redis_url="",
        data_dir=demo.directory,
        # the URLs in answers are the ones printed (on every interface, clients' own)
        public_url=demo.base if specific else None,
        host=host,
        port=port,
        log_format="console",
        log_level="warning",
        console=True,  # the admin console, signed in with the admin token printed
    )


def _simulator_ctx(
    config: SimulatorConfig, sock: socket.socket
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def simulator_ctx(_: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(create_simulator_app(config), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        yield
        await runner.cleanup()

    return simulator_ctx


def _announce(demo: Demo) -> Callable[[web.Application], Awaitable[None]]:
    """Once the gateway has started: the team key, then what to paste to use it."""

    async def announce(gateway: web.Application) -> None:
        demo_key = await credentials.team_key(gateway[TEAMS], demo.directory)
        server = gateway[EMBEDDED_REDIS].info
        redis_text = f"{server.name} {server.version}" if server else "?"
        click.echo(_announcement(demo, demo_key, redis_text))

    return announce


def _announcement(demo: Demo, demo_key: credentials.DemoKey, redis_text: str) -> str:
    base = demo.base
    url_variable, token_variable = admin_variables()
    auth = f'-H "Authorization: Bearer {demo_key.key}"'
    request = f"{base}/v1/requests/<request_id>"
    directory = demo.directory.resolve()
    return (
        f"\nruncomfy-gateway demo on {base} (RunComfy simulator on "
        f"127.0.0.1:{demo.simulator_port})\n"
        f"  data directory : {directory} (embedded {redis_text})\n"
        f"  admin token    : {demo.admin_token}\n"
        f"  team 'demo' key ({demo_key.info.prefix}) : {demo_key.key}\n"
        "  (the same token and key on every start: "
        f"{directory / credentials.CREDENTIALS_FILE})\n\n"
        "Try, in another terminal:\n"
        f"  curl -s -X POST {base}/v1/models/google/nano-banana/pro/text-to-image \\\n"
        f'    {auth} -H "Content-Type: application/json" \\\n'
        f'    -d \'{{"prompt": "a lighthouse at dawn"}}\'\n'
        "then, with the request_id it answers (done after about 4 seconds):\n"
        f'  curl -s "{request}/status" {auth}\n'
        f'  curl -s "{request}/result?include_cost=true" {auth}\n\n'
        "For the admin command line (and $KEY for your own requests), paste:\n"
        f"  export {url_variable}={base} {token_variable}={shlex.quote(demo.admin_token)} "
        f"KEY={demo_key.key}\n"
        f"  {_program()} admin teams list\n"
        f"\nThe admin console (sign in with the admin token): {base}/admin/ui/\n"
        "\nCtrl-C stops it.\n"
    )


def _program() -> str:
    """How the user started this command, to print commands they can paste."""
    argv0 = sys.argv[0]
    if Path(argv0).name != "runcomfy-gateway":
        return f"{shlex.quote(sys.executable)} -m gateway"  # this Python has the gateway
    on_path = shutil.which("runcomfy-gateway")
    if on_path and Path(on_path).resolve() == Path(argv0).resolve():
        return "runcomfy-gateway"
    return shlex.quote(argv0)


def _shown_host(host: str) -> str:
    """Where a local client reaches a listener on ``host`` (any-address means loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
