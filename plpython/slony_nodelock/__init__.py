"""slony-nodelock: a stale-lock-proof cleanupNodelock() for Slony-I."""

__version__ = "0.4.0"
