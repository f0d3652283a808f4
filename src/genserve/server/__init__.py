"""The HTTP API: an OpenAI-compatible FastAPI app over a ServingEngine (see docs/api.md).

Attributes load lazily, so `genserve --help` does not import FastAPI.
"""

from __future__ import annotations

__all__ = ["ServerSettings", "ServerThread", "check_bind", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from genserve.server.app import create_app

        return create_app
    if name in ("ServerSettings", "check_bind"):
        from genserve.server import settings

        return getattr(settings, name)
    if name == "ServerThread":
        from genserve.server.runner import ServerThread

        return ServerThread
    raise AttributeError(f"module 'genserve.server' has no attribute {name!r}")
