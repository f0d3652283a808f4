"""The official openai client against a live server (simulated engine, placeholder outputs)."""

from __future__ import annotations

import base64
import time

import httpx
import openai
import pytest

from server_helpers import wait_video

PNG = b"\x89PNG\r\n\x1a\n"


def test_images_generate_b64(client):
    r = client.images.generate(model="tiny-sd3", prompt="a red fox", n=3, size="64x64",
                               extra_body={"seed": 41, "num_inference_steps": 4, "deadline_s": 30})
    assert r.created > 0 and len(r.data) == 3
    for item in r.data:
        png = base64.b64decode(item.b64_json)
        assert png.startswith(PNG)
        assert png[16:24] == (64).to_bytes(4, "big") * 2  # IHDR width, height
    ext = r.model_extra["genserve"]
    assert ext["seeds"] == [41, 42, 43]
    assert ext["num_inference_steps"] == 4
    assert ext["met_deadline"] == [True, True, True]


def test_images_generate_url(client, sim_server):
    r = client.images.generate(prompt="a lighthouse", response_format="url", size="32x32")
    url = r.data[0].url
    assert url.startswith(sim_server.url + "/v1/images/img_")
    got = httpx.get(url, timeout=10)  # a capability URL: no key needed, like a signed URL
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert got.content.startswith(PNG)


def test_videos_lifecycle(client, sim_server):
    v = client.videos.create(model="tiny-wan", prompt="waves at dusk", size="64x64", seconds="1",
                             extra_body={"num_inference_steps": 12, "seed": 7})
    assert v.object == "video" and v.status in ("queued", "in_progress")
    # seconds is the clip's length: "1" -> 9 frames at 8 fps
    assert v.size == "64x64" and v.seconds == "1.125" and v.model == "tiny-wan" and v.prompt == "waves at dusk"
    assert v.model_extra["num_frames"] == 9 and v.model_extra["seed"] == 7
    done = wait_video(client, v.id)
    assert done.status == "completed" and done.progress == 100 and done.completed_at >= done.created_at
    data = client.videos.download_content(v.id).content
    assert data[4:8] == b"ftyp"  # an MP4 container
    page = client.videos.list(limit=100)
    assert v.id in [x.id for x in page.data]
    deleted = client.videos.delete(v.id)
    assert deleted.deleted and deleted.id == v.id and deleted.object == "video.deleted"
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(v.id)


def test_video_progress_uses_real_steps(client, sim_server):
    v = client.videos.create(prompt="slow clouds", size="64x64",
                             extra_body={"num_frames": 17, "num_inference_steps": 60})
    seen = []
    give_up = time.monotonic() + 60
    while True:
        cur = client.videos.retrieve(v.id)
        seen.append((cur.status, cur.progress, cur.model_extra["steps_done"]))
        if cur.status not in ("queued", "in_progress") or time.monotonic() > give_up:
            break
        time.sleep(0.01)
    assert cur.status == "completed", seen[-3:]
    mids = [p for s, p, k in seen if s == "in_progress"]
    assert mids, seen
    for s, p, k in seen:
        if s == "in_progress":
            assert p == min(99, int(100 * k / 60))
    assert [p for _, p, _ in seen] == sorted(p for _, p, _ in seen)


def test_videos_list_paging(client):
    ids = [client.videos.create(prompt=f"clip {i}", size="32x32", extra_body={"num_inference_steps": 2}).id
           for i in range(5)]
    first = client.videos.list(limit=2, order="asc", after=ids[0])
    assert [x.id for x in first.data] == ids[1:3] and first.has_more
    newest = client.videos.list(limit=3)
    assert [x.id for x in newest.data] == ids[::-1][:3]
    walked = [x.id for x in client.videos.list(limit=2, order="asc", after=ids[0])]  # auto-pagination
    assert walked[:4] == ids[1:]
    for i in ids:
        wait_video(client, i)


def test_models(client):
    ids = {m.id for m in client.models.list()}
    assert ids == {"tiny-sd3", "tiny-wan"}
