"""A test bed of real PostgreSQL 15 servers and real Slony-I 2.2 replication.

Import SlonyBed and use it as a context manager; see bed.py.
"""

from .bed import BedLeftovers, SlonyBed

__all__ = ["BedLeftovers", "SlonyBed"]
