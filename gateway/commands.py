"""The command line's entry point: the core commands of :mod:`gateway.cli` plus the admin
command groups that live in their own modules."""

from gateway import (  # noqa: F401 - they register their admin command groups
    cli_admins,
    cli_dedup,
    cli_quotas,
)
from gateway.cli import main

__all__ = ["main"]
