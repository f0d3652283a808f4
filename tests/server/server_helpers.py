"""Shared helpers for the server tests (a uniquely named module: `conftest` names clash across test folders)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

from genserve.server import ServerSettings, ServerThread, create_app

API_KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


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


def sim_engine(data_dir: Path, gpus: int = 2, profile="tiny-cpu", **kw):
    from genserve.engine.runtime import make_engine

    return make_engine("sim", profile=profile, gpus=gpus, output_dir=Path(data_dir) / "outputs",
                       placeholder_outputs=True, **kw)


def wait_video(client, video_id: str, timeout: float = 20.0, until=("completed", "failed", "cancelled")):
    end = time.monotonic() + timeout
    while True:
        v = client.videos.retrieve(video_id)
        if v.status in until:
            return v
        if time.monotonic() > end:
            raise TimeoutError(f"video {video_id} still {v.status} ({v.progress}%) after {timeout} s")
        time.sleep(0.02)


def wait_for(pred, timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError(what)
        time.sleep(0.005)
