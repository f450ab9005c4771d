"""The command line's entry point: the core commands of :mod:`gateway.cli` plus the admin
command groups that live in their own modules."""

from gateway import cli_quotas  # noqa: F401 - registers admin limits, usage and unreconciled
from gateway.cli import main

__all__ = ["main"]
