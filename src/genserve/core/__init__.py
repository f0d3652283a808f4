"""Core data types of the control plane: requests, life cycle, events, plans, snapshots.

Plain dataclasses only; nothing here imports torch or does I/O.
"""

from genserve.core.errors import GenServeError, IllegalTransition, ProfileError, TraceError, ValidationError
from genserve.core.events import Arrival, BatchDone, Event, Failed, StepDone, VideoDone
from genserve.core.plan import Action, ActionKind, ImageBatch, Plan
from genserve.core.request import Modality, Request, RequestStatus, check_transition
from genserve.core.snapshot import ClusterSpec, ImageView, Snapshot, VideoView

__all__ = [
    "Action", "ActionKind", "Arrival", "BatchDone", "ClusterSpec", "Event", "Failed", "GenServeError",
    "IllegalTransition", "ImageBatch", "ImageView", "Modality", "Plan", "ProfileError", "Request",
    "RequestStatus", "Snapshot", "StepDone", "TraceError", "ValidationError", "VideoDone", "VideoView",
    "check_transition",
]
