"""The command line's entry point: the core commands of :mod:`gateway.cli.main` plus the admin
command groups that live in their own modules."""

from gateway.cli import (  # noqa: F401 - they register their admin command groups
    admins,
    dedup,
    quotas,
)
from gateway.cli.main import main

__all__ = ["main"]
