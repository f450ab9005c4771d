"""``runcomfy-gateway --help`` and the admin commands start without the gateway's server: the
web layer and the services behind it are imported by ``serve``, ``simulator`` and ``demo`` only.

Each check runs in a fresh Python, since this test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import free_port

SERVER_SIDE = (
    "gateway.web",
    "gateway.jobs",
    "gateway.money",
    "gateway.upstream",
    "gateway.settings",
    "gateway.store",
    "gateway.observability",
    "gateway.simulator",
)

# Runs the command line as the entry point does, then prints which modules it loaded.
PROBE = """
import json, sys
from gateway.commands import main
try:
    main(sys.argv[1:], prog_name="runcomfy-gateway")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_by(*args: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh Python has loaded after ``runcomfy-gateway ARGS``."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    modules: list[str] = json.loads(result.stdout.splitlines()[-1])
    return set(modules)


def _server_side(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.startswith(SERVER_SIDE))


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [["--help"], ["admin", "--help"], ["admin", "keys", "rotate", "--help"], ["config", "--help"]],
)
def test_help_loads_neither_the_server_nor_the_http_client(args: list[str]) -> None:
    modules = _loaded_by(*args)
    assert "gateway.cli.app" in modules  # the probe ran the real command line
    assert _server_side(modules) == []
    assert "aiohttp" not in modules and "rich" not in modules


@pytest.mark.slow
def test_an_admin_command_loads_the_http_client_but_not_the_server() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    modules = _loaded_by("admin", "--url", nowhere, "--token", "t", "teams", "list")
    assert "aiohttp" in modules  # the request was made (and refused)
    assert _server_side(modules) == []


@pytest.mark.slow
def test_the_guard_above_would_see_the_server_if_a_command_loaded_it() -> None:
    modules = _loaded_by("config")  # reads the settings: they are server-side
    assert "gateway.settings" in _server_side(modules)
