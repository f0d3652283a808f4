"""Live-server fixtures: a real uvicorn on 127.0.0.1 (free port) in a thread, bounded in time."""

from __future__ import annotations

import warnings

import pytest

# fastapi, uvicorn and openai are installed with the package's extras: a missing one must fail, not skip
from server_helpers import API_KEY, live_server, make_settings, openai_client, sim_engine

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="module")
def sim_server(tmp_path_factory):
    """A live server with an API key over the simulated engine (placeholder outputs)."""
    d = tmp_path_factory.mktemp("sim-server")
    settings = make_settings(d, api_key=API_KEY, engine_kind="sim")
    engine = sim_engine(d)
    with live_server(engine, settings) as srv:
        srv.engine = engine
        srv.settings = settings
        yield srv


@pytest.fixture()
def client(sim_server):
    return openai_client(sim_server)
