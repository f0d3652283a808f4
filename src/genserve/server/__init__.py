"""The HTTP API: an OpenAI-compatible FastAPI app over a ServingEngine (see docs/api.md)."""

from genserve.server.app import create_app
from genserve.server.settings import ServerSettings, check_bind

__all__ = ["ServerSettings", "check_bind", "create_app"]
