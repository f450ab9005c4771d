"""The ``runcomfy-gateway`` command line, put together: every command and admin group is
registered here, by name, from the module that defines it.

Nothing here imports the web layer; ``serve``, ``simulator`` and ``demo`` import it when they
run, so ``--help``, completion and the admin commands start quickly.
"""

from __future__ import annotations

import click

from gateway import __version__
from gateway.cli import admins, dedup, keys, pricing, quotas, teams
from gateway.cli.common import admin
from gateway.cli.config import config
from gateway.cli.demo.command import demo
from gateway.cli.serve import serve
from gateway.cli.simulator import simulator

ADMIN_COMMANDS: tuple[click.Command, ...] = (
    teams.group,
    keys.group,
    quotas.limits,
    quotas.usage,
    quotas.unreconciled,
    quotas.unknown_submits,
    pricing.group,
    dedup.group,
    dedup.purge,
    admins.whoami,
    admins.group,
    admins.audit,
)


@click.group()
@click.version_option(__version__, prog_name="runcomfy-gateway")
def main() -> None:
    """A caching, quota-enforcing gateway in front of the RunComfy APIs."""


for command in ADMIN_COMMANDS:
    admin.add_command(command)
for command in (serve, simulator, demo, admin, config):
    main.add_command(command)
