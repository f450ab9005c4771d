"""The command line's entry point (``runcomfy-gateway``, ``python -m gateway``)."""

from gateway.cli.app import main

__all__ = ["main"]
