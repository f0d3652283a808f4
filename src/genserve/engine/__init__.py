"""The engine: the controller (one control plane) and its clocks. No torch here."""

from genserve.engine.clock import Clock, VirtualClock, WallClock
from genserve.engine.controller import Controller, PlanError, RequestRecord, VideoProgress

__all__ = ["Clock", "Controller", "PlanError", "RequestRecord", "VideoProgress", "VirtualClock", "WallClock"]
