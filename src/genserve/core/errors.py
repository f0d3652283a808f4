"""Exception types. Every error a user can cause derives from GenServeError and carries a readable message."""


class GenServeError(Exception):
    """Base class for errors with a message meant for the user."""


class ValidationError(GenServeError, ValueError):
    """A request or option is invalid; the message says what to fix."""


class IllegalTransition(GenServeError, RuntimeError):
    """A request life-cycle transition that the state machine forbids."""


class ProfileError(GenServeError, LookupError):
    """A latency profile lookup failed: unknown model, or a point outside the profiled range."""


class TraceError(GenServeError, ValueError):
    """A trace file is malformed; the message names the line and the field."""
