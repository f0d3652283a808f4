"""Latency profiles: the cost model the scheduler and the simulator trust (see schema.py for the format)."""

from genserve.profiles.profile import BUNDLED, Profile
from genserve.profiles.schema import SCHEMA_ID

__all__ = ["BUNDLED", "Profile", "SCHEMA_ID"]
