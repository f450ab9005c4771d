"""runcomfy-gateway: a caching, quota-enforcing proxy in front of the RunComfy APIs."""

__version__ = "0.1.0"
