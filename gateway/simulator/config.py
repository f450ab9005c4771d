"""The simulator's knobs: one immutable value, so a reset restores exactly the starting point."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the simulated RunComfy behaves; tests shrink the durations to milliseconds."""

    token: str = "sim-token"  # noqa: S105 - the fake upstream's well-known test token
    """The only Bearer token accepted on the API routes (the control API needs none)."""
    queue_seconds: float = 1.0
    """How long a new job waits in the queue (a catalog entry may override it)."""
    run_seconds: float = 3.0
    """How long a job runs once it leaves the queue (a catalog entry may override it)."""
    balance_usd: float = 100.0
    """Account balance; submits are refused with 402 once it is zero or negative."""
    asset_base_url: str = "https://playgrounds-storage-public.runcomfy.net"
    """Host of Model API output URLs (clients only download from *.runcomfy.net)."""
    serverless_asset_base_url: str = "https://serverless-api-storage.runcomfy.net"
    """Host of Serverless output URLs."""
    seed: int | None = None
    """Makes request ids reproducible when set."""
    catalog_path: str | None = None
    """A catalog JSON file to serve instead of the bundled ``catalog.json``."""
