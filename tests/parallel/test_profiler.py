"""`genserve profile` (profiles/profiler.py): real tiny models measured on 2 CPU ranks (SP 1 and 2 through the
parallel code), the document validates against the schema, and the numbers are measurements, not constants."""

from __future__ import annotations

import json

import pytest

from genserve.profiles import Profile
from genserve.profiles.profiler import parse_sizes, run_profile, sp_degrees

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_parse_sizes_and_degrees():
    assert parse_sizes("32x32, 64x48,64x64x9") == ([(32, 32), (64, 48)], [(64, 64, 9)])
    with pytest.raises(ValueError, match="bad size"):
        parse_sizes("32")
    assert sp_degrees(1) == [1] and sp_degrees(4) == [1, 2, 4] and sp_degrees(6) == [1, 2, 4]


def test_profile_two_cpu_ranks(tmp_path):
    out = tmp_path / "p.json"
    # 256x256 is beyond tiny-sd3's positional embedding: skipped, not invented
    doc = run_profile(devices=["cpu", "cpu"], sizes="32x32,64x64,256x256,32x32x5,64x64x9", repeats=1, warmup=1,
                      out=out, name="t", log=lambda s: None, min_timed_s=0.0)
    raw = doc.pop("_raw")
    prof = Profile.load(out)  # validates against genserve.profile/v1
    assert json.loads(out.read_text()) == doc
    assert prof.degrees("tiny-wan") == [1, 2]
    assert prof.max_batch("tiny-sd3") == 8
    img = doc["image_models"]["tiny-sd3"]
    assert [(p["width"], p["height"]) for p in img["points"]] == [(32, 32), (64, 64)]
    assert any("256x256 skipped" in line for line in raw["log"])
    vid = doc["video_models"]["tiny-wan"]
    assert [(p["width"], p["height"], p["frames"]) for p in vid["points"]] == [(32, 32, 5), (64, 64, 9)]
    assert set(vid["resume_s"]) == set(vid["reconfigure_s"]) == {"1", "2"}
    # measured: every number differs from its neighbours (no constant or formula filled in), all positive
    steps = [p["step_s"][b] for p in img["points"] for b in ("1", "2", "4", "8")]
    assert len(set(steps)) == len(steps) and min(steps) > 0
    assert prof.isolated_latency("video", "tiny-wan", 64, 64, 9) > 0
    assert raw["video"]["state_bytes"] > 0
    # the defaults are the measured points (a --sizes run), inside the profiled range
    assert doc["defaults"]["video_sizes"] == [[32, 32, 5], [64, 64, 9]]
