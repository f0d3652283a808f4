"""Unit tests without a live server: request normalisation, the job store, output paths, bind checks, the
real-clock engine."""

from __future__ import annotations

import time

import pytest

from genserve.core.errors import ValidationError
from genserve.core.request import Modality, Request, RequestStatus
from genserve.profiles import Profile
from genserve.server.errors import APIError
from genserve.server.schemas import (ImageGenerationRequest, JobSpec, VideoCreateRequest, frames_for_seconds,
                                     new_id, normalise_image, normalise_video, parse_size, valid_id)
from genserve.server.settings import ServerSettings, check_bind, is_loopback
from genserve.server.store import JobStore, OutputDir


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return ServerSettings(data_dir=tmp_path_factory.mktemp("s"), profile=Profile.load("tiny-cpu"))


def test_parse_size():
    assert parse_size("64x48") == (64, 48) and parse_size(" 64 X 48 ") == (64, 48)
    for bad in ("64", "x64", "64x", "-1x4", "1.5x2", "64x64x9", ""):
        with pytest.raises(APIError) as e:
            parse_size(bad)
        assert e.value.status == 400 and e.value.param == "size"


def test_frames_for_seconds():
    assert [frames_for_seconds(s, 8) for s in (0.1, 1, 2, 4)] == [5, 9, 17, 33]
    assert all((frames_for_seconds(s, 16) - 1) % 4 == 0 for s in (0.3, 1, 2.5, 5))


def test_ids():
    i, v = new_id("image"), new_id("video")
    assert valid_id(i, "image") and valid_id(v, "video") and not valid_id(i, "video")
    for bad in ("", "video_", "video_../../x", "video_" + "g" * 24, "VIDEO_" + "0" * 24, "video_" + "0" * 25):
        assert not valid_id(bad)


def test_normalise_defaults_and_seeds(settings):
    spec = normalise_image(settings, ImageGenerationRequest(prompt="x", seed=9))
    assert (spec.width, spec.height) == tuple(settings.profile.doc.defaults.image_sizes[0])
    assert spec.steps == settings.profile.default_steps("tiny-sd3") and spec.seed == 9
    v = normalise_video(settings, VideoCreateRequest(prompt="x", seconds="2", size="64x64"))
    assert v.frames == 17 and v.seconds == "2"
    v = normalise_video(settings, VideoCreateRequest(prompt="x", num_frames=9, size="64x64"))
    assert v.frames == 9 and v.seconds == f"{9 / settings.fps:g}"
    assert JobSpec.from_dict(v.to_dict()) == v


def test_form_strings_coerce(settings):
    body = VideoCreateRequest.from_form({"prompt": "x", "num_frames": "9", "num_inference_steps": "3",
                                         "seed": "4", "sigma": "1.5", "size": "32x32"})
    spec = normalise_video(settings, body)
    assert (spec.frames, spec.steps, spec.seed, spec.sigma) == (9, 3, 4, 1.5)


def test_store_roundtrip_and_paging(tmp_path):
    st = JobStore(tmp_path / "j.db")
    spec = JobSpec("video", "tiny-wan", "p", 32, 32, 9, 4, 1, None, None, None, None, "1")
    ids = [new_id("video") for _ in range(5)]
    for i in ids:
        st.insert(i, spec, created_at=time.time(), deadline_at=None, steps_total=4)
    st.update(ids[0], status="completed", progress=100, met_deadline=True)
    j = st.get(ids[0])
    assert j.status == "completed" and j.met_deadline is True and j.spec == spec
    page, more = st.page("video", 2, None, "asc")
    assert [p.id for p in page] == ids[:2] and more
    page, more = st.page("video", 10, ids[2], "asc")
    assert [p.id for p in page] == ids[3:] and not more
    page, _ = st.page("video", 2, ids[2], "desc")
    assert [p.id for p in page] == [ids[1], ids[0]]
    with pytest.raises(KeyError):
        st.page("video", 2, new_id("video"), "asc")
    assert [j.id for j in st.unfinished()] == ids[1:]
    with pytest.raises(KeyError):
        st.update(ids[0], bogus=1)
    st.close()
    st2 = JobStore(tmp_path / "j.db")  # reopen: WAL database persists
    assert st2.get(ids[0]).status == "completed"
    assert st2._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    st2.close()


def test_output_dir_cannot_escape(tmp_path):
    out = OutputDir(tmp_path / "outputs")
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"x")
    for name in ("../secret.png", "/etc/passwd", ".tmp-x.png", "img_zz.png", "secret.png", None, ""):
        assert out.resolve(name) is None
    with pytest.raises(ValueError):
        out.path_for("../../etc/passwd", "image")
    vid = new_id("video")
    src = tmp_path / "engine.mp4"
    src.write_bytes(b"mp4")
    name = out.adopt(src, vid, "video")
    assert name == f"{vid}.mp4" and out.resolve(name).read_bytes() == b"mp4" and not src.exists()
    assert not list(out.root.glob(".tmp-*"))


def test_bind_rules():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "key")
    with pytest.raises(ValidationError, match="API key"):
        check_bind("0.0.0.0", None)
    for blank in ("", " ", "\t\n"):  # never read as "no key" (that turned auth off on a public bind)
        with pytest.raises(ValidationError, match="blank"):
            check_bind("0.0.0.0", blank)
        with pytest.raises(ValidationError, match="blank"):
            ServerSettings(data_dir="unused", profile=Profile.load("tiny-cpu"), api_key=blank)


def _req(i, now, modality=Modality.VIDEO, steps=20, **kw):
    if modality is Modality.VIDEO:
        return Request(f"r{i}", modality, "tiny-wan", "p", 64, 64, steps, i, now, now + 10, frames=9, **kw)
    return Request(f"r{i}", modality, "tiny-sd3", "p", 64, 64, steps, i, now, now + 10, **kw)


def test_engine_runtime_basics(tmp_path):
    from genserve.engine.runtime import make_engine

    eng = make_engine("sim", profile="tiny-cpu", gpus=2, output_dir=tmp_path, placeholder_outputs=True)
    with pytest.raises(RuntimeError):
        eng.submit(_req(0, eng.now))  # not started
    eng.start()
    try:
        updates = []
        eng.submit(_req(1, eng.now), updates.append)
        eng.submit(_req(2, eng.now, Modality.IMAGE, steps=4), updates.append)
        with pytest.raises(ValidationError, match="duplicate"):
            eng.submit(_req(1, eng.now))
        with pytest.raises(Exception, match="unknown video model"):
            eng.submit(Request("bad", Modality.VIDEO, "nope", "p", 64, 64, 5, 0, eng.now, eng.now + 1, frames=9))
        u1, u2 = eng.wait("r1", 20), eng.wait("r2", 20)
        assert u1.status is RequestStatus.DONE and u1.steps_done == 20 and u1.outputs
        assert u2.status is RequestStatus.DONE and u2.outputs[0].endswith(".png")
        time.sleep(0.05)
        mine = [u for u in updates if u.request_id == "r1"]
        assert [u.steps_done for u in mine] == sorted(u.steps_done for u in mine)  # in order
        assert mine[-1].status is RequestStatus.DONE and mine[-1].progress == 100
        assert eng.cancel("r1") is False and eng.cancel("unknown") is False
        s = eng.stats()
        assert s.finished["video"]["done"] == 1 and s.finished["image"]["done"] == 1
        assert len(s.step_seconds) == 20 and eng.stats().step_seconds == []  # drained
        assert len(s.gpu_busy_share) == 2
        eng.submit(_req(3, eng.now, steps=200))
        time.sleep(0.1)
        assert eng.cancel("r3") is True
        u3 = eng.wait("r3", 10)
        assert u3.status is RequestStatus.CANCELLED and u3.steps_done < 200
    finally:
        eng.close()
    assert not eng._thread.is_alive() and not eng._notifier.is_alive()
    eng.close()  # idempotent


def test_make_engine_errors():
    from genserve.engine.runtime import make_engine

    with pytest.raises(ValidationError, match="unknown engine kind"):
        make_engine("bogus")
    with pytest.raises(ValidationError, match="unknown policy"):
        make_engine("sim", policy="nope")
