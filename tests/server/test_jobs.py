"""Cancellation at a step boundary, restart durability, overload, metrics."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import API_KEY, AUTH, live_server, make_settings, openai_client, sim_engine, wait_for, wait_video

from genserve.core.request import RequestStatus
from genserve.profiles import Profile



def test_cancel_stops_running_video_at_step_boundary(tmp_path):
    settings = make_settings(tmp_path, api_key=API_KEY, engine_kind="sim")
    engine = sim_engine(tmp_path, gpus=1)
    with live_server(engine, settings) as srv:
        client = openai_client(srv)
        v = client.videos.create(prompt="a long pan", size="64x64",
                                 extra_body={"num_frames": 17, "num_inference_steps": 200})
        wait_for(lambda: (engine.status(v.id) or None) and engine.status(v.id).steps_done >= 3, what="video ran")
        at_cancel = engine.status(v.id).steps_done
        t0 = time.monotonic()
        assert client.videos.delete(v.id).deleted
        call_s = time.monotonic() - t0
        wait_for(lambda: engine.status(v.id).status is RequestStatus.CANCELLED, what="cancelled")
        final = engine.status(v.id)
        step_s = engine.profile.video_step("tiny-wan", 64, 64, 17, 1)
        # the step in flight when the cancel reached the engine finishes, then the video stops
        assert at_cancel <= final.steps_done <= at_cancel + int(call_s / step_s) + 2
        assert final.steps_done < 200
        assert engine.ctl.free_gpus() == [0]  # its GPU is free again
        import openai

        with pytest.raises(openai.NotFoundError):  # deleted: gone from the API at once
            client.videos.retrieve(v.id)
        time.sleep(0.05)
        assert engine.status(v.id).steps_done == final.steps_done  # no step after the cancellation
        # the freed GPU serves the next request at once
        r = client.images.generate(prompt="after cancel", size="32x32")
        assert r.data[0].b64_json


def test_restart_keeps_jobs(tmp_path):
    settings = make_settings(tmp_path, api_key=API_KEY, engine_kind="sim")
    engine = sim_engine(tmp_path, gpus=1)
    with live_server(engine, settings) as srv:
        client = openai_client(srv)
        done = client.videos.create(prompt="short", size="32x32", extra_body={"num_inference_steps": 3})
        wait_video(client, done.id)
        content = client.videos.download_content(done.id).content
        running = client.videos.create(prompt="long", size="64x64",
                                       extra_body={"num_frames": 17, "num_inference_steps": 80})
        queued = client.videos.create(prompt="next", size="32x32", extra_body={"num_inference_steps": 5})
        wait_video(client, running.id, until=("in_progress",))
    # server 1 is gone (engine closed mid-run); its jobs stay in SQLite as they were
    from genserve.server.store import JobStore

    store = JobStore(settings.db_path)
    assert store.get(running.id).status == "in_progress"  # (the scheduler may have run `queued` first)
    from genserve.server.schemas import JobSpec

    orphan = "img_" + "ab" * 12
    store.insert(orphan, JobSpec("image", "tiny-sd3", "lost", 32, 32, 1, 4, 1, None, None, None, None, "0"),
                 created_at=time.time(), deadline_at=None, steps_total=4)
    store.close()

    engine2 = sim_engine(tmp_path, gpus=1)
    with live_server(engine2, make_settings(tmp_path, api_key=API_KEY, engine_kind="sim")) as srv2:
        client2 = openai_client(srv2)
        assert client2.videos.download_content(done.id).content == content  # completed output survives
        assert client2.videos.retrieve(done.id).status == "completed"
        for vid in (running.id, queued.id):
            v = wait_video(client2, vid)
            assert v.status == "completed", v
            assert client2.videos.download_content(vid).content[4:8] == b"ftyp"
        assert running.id in engine2.ctl.requests  # re-submitted to the new engine
        ids = [x.id for x in client2.videos.list(order="asc")]
        assert ids == [done.id, running.id, queued.id]  # order survives too
        j = srv2.app.state.server.store.get(orphan)
        assert j.status == "failed" and j.error_code == "interrupted"
        assert srv2.app.state.server.store.get(running.id).attempts == 2


def test_overload_returns_429_with_retry_after(tmp_path):
    import openai

    settings = make_settings(tmp_path, api_key=API_KEY, engine_kind="sim", max_active=2, retry_after_s=3)
    slow = Profile.load("tiny-cpu").scaled(1.0, 20.0, "tiny-cpu-slow-videos")  # 100 steps take seconds
    engine = sim_engine(tmp_path, gpus=1, profile=slow)
    with live_server(engine, settings) as srv:
        client = openai_client(srv)
        a = client.videos.create(prompt="one", extra_body={"num_inference_steps": 100})
        b = client.videos.create(prompt="two", extra_body={"num_inference_steps": 100})
        with pytest.raises(openai.RateLimitError) as exc:
            client.videos.create(prompt="three")
        assert exc.value.response.headers["retry-after"] == "3"
        assert exc.value.body["code"] == "engine_overloaded"
        r = httpx.post(srv.url + "/v1/images/generations", json={"prompt": "x"}, headers=AUTH, timeout=10)
        assert r.status_code == 429 and r.headers["retry-after"] == "3"
        client.videos.delete(a.id)
        client.videos.delete(b.id)
        wait_for(lambda: srv.app.state.server.active_count() == 0, what="slots freed")
        assert client.images.generate(prompt="fits again", size="32x32").data


def test_engine_rejection_is_400(tmp_path):
    settings = make_settings(tmp_path, engine_kind="sim")
    # The engine's profile covers less than the server's: 128x128x17 passes the server, the engine refuses it.
    narrow = Profile.load("tiny-cpu").to_dict()
    narrow["video_models"]["tiny-wan"]["points"].pop()
    engine = sim_engine(tmp_path, profile=Profile.from_dict(narrow))
    with live_server(engine, settings) as srv:  # no API key: open on localhost
        r = httpx.post(srv.url + "/v1/videos", json={"prompt": "too big", "size": "128x128", "num_frames": 17},
                       timeout=10)
        assert r.status_code == 400 and r.json()["error"]["code"] == "rejected_by_engine"
        assert httpx.get(srv.url + "/v1/videos", timeout=10).json()["data"] == []  # not stored
        r = httpx.post(srv.url + "/v1/images/generations", json={"prompt": "fine", "size": "32x32"}, timeout=10)
        assert r.status_code == 200


def test_metrics_parse(sim_server, client):
    client.images.generate(prompt="for metrics", size="32x32", n=2)
    v = client.videos.create(prompt="for metrics", size="32x32", extra_body={"num_inference_steps": 4})
    wait_video(client, v.id)
    r = httpx.get(sim_server.url + "/metrics", headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name in ("genserve_requests", "genserve_slo_met", "genserve_slo_attainment", "genserve_queue_length",
                 "genserve_running", "genserve_gpu_busy_share", "genserve_preemptions", "genserve_sp_changes",
                 "genserve_step_seconds", "genserve_admission_seconds", "genserve_api_requests", "genserve_jobs"):
        assert name in fams, name
    done = {(s.labels["modality"], s.labels["status"]): s.value for s in fams["genserve_requests"].samples
            if s.name == "genserve_requests_total"}
    assert done[("image", "done")] >= 2 and done[("video", "done")] >= 1
    sar = {s.labels["modality"]: s.value for s in fams["genserve_slo_attainment"].samples}
    assert 0.0 <= sar["image"] <= 1.0 and 0.0 <= sar["video"] <= 1.0
    steps = [s for s in fams["genserve_step_seconds"].samples if s.name == "genserve_step_seconds_count"]
    assert steps[0].value >= 4
    gpus = [s for s in fams["genserve_gpu_busy_share"].samples]
    assert len(gpus) == 2 and all(0.0 <= s.value <= 1.0 for s in gpus)


def test_health(sim_server):
    r = httpx.get(sim_server.url + "/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["engine"] == "sim"


class _BrokenPolicy:
    name = "broken"
    preemptive = False

    def plan(self, snapshot):
        raise RuntimeError("policy bug")


def test_engine_crash_fails_jobs_and_turns_503(tmp_path):
    from genserve.engine.runtime import make_engine

    settings = make_settings(tmp_path, api_key=API_KEY, engine_kind="sim")
    engine = make_engine("sim", profile="tiny-cpu", gpus=1, policy=_BrokenPolicy())
    with live_server(engine, settings) as srv:
        client = openai_client(srv)
        v = client.videos.create(prompt="doomed", size="32x32")
        got = wait_video(client, v.id, timeout=10)
        assert got.status == "failed" and "policy bug" in got.error.message
        r = httpx.post(srv.url + "/v1/videos", json={"prompt": "next"}, headers=AUTH, timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable" and "retry-after" in r.headers
        h = httpx.get(srv.url + "/health", timeout=10)
        assert h.status_code == 503 and "policy bug" in h.json()["error"]
