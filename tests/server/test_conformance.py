"""What the official openai client expects of the videos and images APIs, checked with the client itself against
a live server (simulated engine, placeholder outputs)."""

from __future__ import annotations

import base64
import sqlite3
import time

import httpx
import openai
import pytest
from openai.types import Video
from pydantic import TypeAdapter
from server_helpers import API_KEY, AUTH, live_server, make_settings, openai_client, sim_engine, wait_for, wait_video

from genserve.core.request import RequestStatus
from genserve.profiles import Profile
from genserve.server import ServerSettings

LITERAL = ("queued", "in_progress", "completed", "failed")  # openai.types.Video.status


def _fits_client_type(raw: dict) -> None:
    """Each field of a video object validates against openai.types.Video's annotation for it (status literal
    included). `size` is left out: the client's literal lists Sora's four sizes, genserve serves the profile's
    (the client does not validate answers, so other sizes pass through)."""
    for name, field in Video.model_fields.items():
        if name != "size":
            TypeAdapter(field.annotation).validate_python(raw.get(name, field.default))


def _raw_videos(srv) -> list[dict]:
    r = httpx.get(srv.url + "/v1/videos", params={"limit": 100}, headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def _slow(steps_k: float):
    return Profile.load("tiny-cpu").scaled(1.0, steps_k, f"tiny-cpu-videos-x{steps_k:g}")


def test_delete_active_video_is_gone_and_its_work_stops(tmp_path):
    settings = make_settings(tmp_path, api_key=API_KEY, engine_kind="sim")
    engine = sim_engine(tmp_path, gpus=1)
    with live_server(engine, settings) as srv:
        client = openai_client(srv)
        keep = client.videos.create(prompt="kept", size="32x32", extra_body={"num_inference_steps": 2})
        v = client.videos.create(prompt="a long pan", size="64x64",
                                 extra_body={"num_frames": 17, "num_inference_steps": 200})
        wait_for(lambda: engine.status(v.id) is not None and engine.status(v.id).steps_done >= 2, what="video ran")
        d = client.videos.delete(v.id)
        assert d.deleted and d.id == v.id
        with pytest.raises(openai.NotFoundError) as e:
            client.videos.retrieve(v.id)
        assert e.value.code == "video_not_found"
        listed = [x.id for x in client.videos.list(limit=100)]  # the client's auto-pagination too
        assert v.id not in listed and keep.id in listed
        for raw in _raw_videos(srv):
            _fits_client_type(raw)
        with pytest.raises(openai.NotFoundError):
            client.videos.download_content(v.id)
        with pytest.raises(openai.NotFoundError):
            client.videos.delete(v.id)
        # the engine stops it at the next step boundary and frees its GPU
        wait_for(lambda: engine.status(v.id).status is RequestStatus.CANCELLED, what="engine cancelled it")
        assert engine.status(v.id).steps_done < 200
        wait_for(lambda: engine.ctl.free_gpus() == [0], what="GPU freed")
        # its row is gone once the engine let go (nothing left to re-submit after a restart)
        wait_for(lambda: srv.app.state.server.store.get(v.id) is None, what="row purged")


def test_video_deleted_while_running_is_not_resubmitted_and_late_file_is_removed(tmp_path):
    settings = make_settings(tmp_path, api_key=API_KEY, engine_kind="sim")
    slow = _slow(200.0)  # a 64x64x17 step takes about 3 s: the cancel is still pending when the server stops
    engine = sim_engine(tmp_path, gpus=1, profile=slow)
    with live_server(engine, settings) as srv:
        client = openai_client(srv)
        v = client.videos.create(prompt="long", size="64x64", extra_body={"num_frames": 17, "num_inference_steps": 50})
        wait_video(client, v.id, until=("in_progress",))
        assert client.videos.delete(v.id).deleted
        with pytest.raises(openai.NotFoundError):
            client.videos.retrieve(v.id)
    con = sqlite3.connect(settings.db_path)  # the precondition: the stop came before the engine's cancellation
    assert con.execute("SELECT status FROM jobs WHERE id = ?", (v.id,)).fetchone() == ("deleted",)
    con.close()
    late = settings.outputs_dir / f"{v.id}.mp4"
    late.write_bytes(b"\x00\x00\x00\x18ftypmp42 written by the engine after the delete")
    engine2 = sim_engine(tmp_path, gpus=1)
    with live_server(engine2, make_settings(tmp_path, api_key=API_KEY, engine_kind="sim")) as srv2:
        client2 = openai_client(srv2)
        assert v.id not in engine2.ctl.requests  # not re-submitted
        with pytest.raises(openai.NotFoundError):
            client2.videos.retrieve(v.id)
        assert v.id not in [x.id for x in client2.videos.list()]
        assert not late.exists()


def test_engine_cancelled_video_is_failed_with_code_cancelled(sim_server, client):
    v = client.videos.create(prompt="stopped by the engine", size="64x64",
                             extra_body={"num_frames": 17, "num_inference_steps": 200})
    sim_server.engine.cancel(v.id)  # e.g. an operator or the engine ending it, not DELETE
    got = client.videos.poll(v.id, poll_interval_ms=10)  # the client's helper ends on completed / failed only
    assert got.status == "failed" and got.error.code == "cancelled"
    raw = httpx.get(f"{sim_server.url}/v1/videos/{v.id}", headers=AUTH, timeout=10).json()
    _fits_client_type(raw)
    assert raw["status"] == "failed" and raw["error"]["code"] == "cancelled"
    for raw in _raw_videos(sim_server):
        assert raw["status"] in LITERAL
        _fits_client_type(raw)


@pytest.mark.parametrize("call", ["edit", "extend", "create_character", "get_character", "remix",
                                  "images_edit", "images_variation"])
def test_unimplemented_client_calls_get_404_unsupported_endpoint(client, call):
    clip = ("clip.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    png = ("a.png", base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2O"
                                     "UAAAAABJRU5ErkJggg=="), "image/png")
    calls = {
        "edit": lambda: client.videos.edit(prompt="brighter", video=clip),
        "extend": lambda: client.videos.extend(prompt="more", seconds="4", video=clip),
        "create_character": lambda: client.videos.create_character(name="cat", video=clip),
        "get_character": lambda: client.videos.get_character("char_123"),
        "remix": lambda: client.videos.remix("video_" + "0" * 24, prompt="again"),
        "images_edit": lambda: client.images.edit(image=png, prompt="a hat"),
        "images_variation": lambda: client.images.create_variation(image=png),
    }
    with pytest.raises(openai.NotFoundError) as e:
        calls[call]()
    assert e.value.status_code == 404 and e.value.code == "unsupported_endpoint"
    assert "does not implement" in e.value.body["message"]


def test_unimplemented_calls_need_the_key_first(sim_server):
    r = httpx.post(sim_server.url + "/v1/videos/edits", json={"prompt": "x"}, timeout=10)
    assert r.status_code == 401


def test_seconds_is_the_clip_length(client):
    v = client.videos.create(prompt="two seconds", size="32x32", seconds="2", extra_body={"num_inference_steps": 2})
    assert v.model_extra["num_frames"] == 17 and v.seconds == "2.125"  # 17 frames at 8 fps
    assert client.videos.retrieve(v.id).seconds == "2.125"
    v = client.videos.create(prompt="nine frames", size="32x32", extra_body={"num_frames": 9, "num_inference_steps": 2})
    assert v.seconds == "1.125"
    assert {x.id: x.seconds for x in client.videos.list(limit=100)}[v.id] == "1.125"


def test_deadline_at_has_sub_second_precision(client):
    t0 = time.time()
    v = client.videos.create(prompt="urgent", size="32x32", extra_body={"deadline_s": 0.25, "num_inference_steps": 2})
    t1 = time.time()
    d = v.model_extra["deadline_at"]
    assert isinstance(d, float)
    assert t0 + 0.25 - 0.001 <= d <= t1 + 0.25 + 0.001
    assert d > v.created_at  # created_at is whole seconds (the client's type); the deadline is not


def test_poll_after_header_on_create_and_retrieve(client, sim_server):
    raw = client.videos.with_raw_response.create(prompt="polled", size="64x64",
                                                 extra_body={"num_frames": 17, "num_inference_steps": 30})
    v = raw.parse()
    s = sim_server.settings
    ms = int(raw.headers["openai-poll-after-ms"])
    assert s.poll_min_ms <= ms <= s.poll_max_ms
    got = client.videos.with_raw_response.retrieve(v.id)
    assert s.poll_min_ms <= int(got.headers["openai-poll-after-ms"]) <= s.poll_max_ms
    assert client.videos.poll(v.id).status == "completed"  # the helper sleeps what the header says


def test_poll_after_follows_the_expected_run_time(tmp_path):
    engine = sim_engine(tmp_path, gpus=1, profile=_slow(20.0))
    settings = ServerSettings(data_dir=tmp_path, profile=_slow(20.0), api_key=API_KEY, engine_kind="sim")
    with live_server(engine, settings) as srv:
        client = openai_client(srv)
        short = client.videos.with_raw_response.create(prompt="s", size="32x32", extra_body={"num_inference_steps": 1})
        long = client.videos.with_raw_response.create(prompt="l", size="64x64",
                                                      extra_body={"num_frames": 17, "num_inference_steps": 100})
        a, b = int(short.headers["openai-poll-after-ms"]), int(long.headers["openai-poll-after-ms"])
        assert a == settings.poll_min_ms and b > a
        client.videos.delete(long.parse().id)


@pytest.mark.parametrize("fmt,magic,media", [("jpeg", b"\xff\xd8\xff", "image/jpeg"), ("webp", b"RIFF", "image/webp")])
def test_image_output_format(client, fmt, magic, media):
    r = client.images.generate(prompt="a red fox", size="64x64", output_format=fmt, output_compression=80,
                               extra_body={"seed": 3, "num_inference_steps": 2})
    assert r.output_format == fmt
    data = base64.b64decode(r.data[0].b64_json)
    assert data.startswith(magic)
    if fmt == "webp":
        assert data[8:12] == b"WEBP"
    u = client.images.generate(prompt="a red fox", size="64x64", output_format=fmt, response_format="url",
                               extra_body={"seed": 3, "num_inference_steps": 2})
    assert u.output_format == fmt
    got = httpx.get(u.data[0].url, timeout=10)
    assert got.status_code == 200 and got.headers["content-type"] == media and got.content.startswith(magic)


def test_image_output_compression_changes_the_jpeg(client):
    sizes = []
    for q in (5, 95):
        r = client.images.generate(prompt="gradient", size="64x64", output_format="jpeg", output_compression=q,
                                   extra_body={"seed": 11, "num_inference_steps": 2})
        sizes.append(len(base64.b64decode(r.data[0].b64_json)))
    assert sizes[0] < sizes[1]


def test_image_output_options_checked(sim_server):
    for body, status, param in (({"output_compression": 101}, 400, "output_compression"),
                                ({"output_compression": -1}, 400, "output_compression"),
                                ({"output_format": "gif"}, 400, "output_format"),
                                ({"output_format": "webp", "output_compression": 0}, 200, None)):
        r = httpx.post(sim_server.url + "/v1/images/generations", json={"prompt": "x", "size": "32x32", **body},
                       headers=AUTH, timeout=10)
        assert r.status_code == status, r.text
        if param:
            assert r.json()["error"]["param"] == param and r.json()["error"]["code"] == "invalid_value"
