"""Live-server fixtures: a real uvicorn on 127.0.0.1 (free port) in a thread, bounded in time."""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import uvicorn  # noqa: E402

from genserve.server import ServerSettings, ServerThread, create_app  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

API_KEY = "test-key-123"


@contextmanager
def live_server(engine, settings: ServerSettings):
    app = create_app(engine, settings)
    srv = ServerThread(app)
    srv.start(timeout=30)
    try:
        yield srv
    finally:
        srv.stop(timeout=30)
        assert not srv.thread.is_alive(), "uvicorn did not stop in time"


def make_settings(data_dir: Path, **kw) -> ServerSettings:
    return ServerSettings.from_env(data_dir, "tiny-cpu", **kw)


def openai_client(srv: ServerThread, api_key: str = API_KEY, **kw):
    import openai

    kw.setdefault("timeout", 30.0)
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=api_key, max_retries=0, **kw)


def sim_engine(data_dir: Path, gpus: int = 2, **kw):
    from genserve.engine.runtime import make_engine

    return make_engine("sim", profile="tiny-cpu", gpus=gpus, output_dir=Path(data_dir) / "outputs",
                       placeholder_outputs=True, **kw)


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


def wait_video(client, video_id: str, timeout: float = 20.0, until=("completed", "failed", "cancelled")):
    end = time.monotonic() + timeout
    while True:
        v = client.videos.retrieve(video_id)
        if v.status in until:
            return v
        if time.monotonic() > end:
            raise TimeoutError(f"video {video_id} still {v.status} ({v.progress}%) after {timeout} s")
        time.sleep(0.02)
