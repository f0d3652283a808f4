import json

import pytest

from genserve.core import ProfileError
from genserve.profiles import Profile
from genserve.workloads.trace import deadline_for


@pytest.fixture(scope="module")
def paper():
    return Profile.load("paper")


def test_paper_matches_the_spec(paper):
    # DiT seconds / 50 steps, spec section 6; SP speedups, spec section 4.
    assert paper.video_step("wan2.2-t2v-5b", 768, 768, 81, 1) == pytest.approx(1.0)
    assert paper.video_step("wan2.2-t2v-5b", 256, 256, 81, 1) == pytest.approx(4.41 / 50)
    assert paper.video_step("wan2.2-t2v-5b", 768, 768, 81, 8) == pytest.approx(1.0 / 7.0)
    assert paper.video_step("wan2.2-t2v-5b", 480, 480, 81, 4) == pytest.approx(16.03 / 50 / 3.5)
    assert paper.video_decode("wan2.2-t2v-5b", 480, 480, 81) == pytest.approx(1.01)
    assert paper.resume_cost("wan2.2-t2v-5b", 8) == pytest.approx(0.868e-3)
    iso = paper.isolated_latency("video", "wan2.2-t2v-5b", 768, 768, 81)
    assert iso == pytest.approx(0.03 + 89 * 1.0 + 2.47)  # 89 steps: fitted, see paper.md


def test_image_deadlines_span_two_to_eight_seconds(paper):
    d = [1.5 * paper.isolated_latency("image", "sd3.5-medium", s, s) for s in (768, 1024, 1440)]
    assert 2.0 <= d[0] < d[1] < d[2] <= 8.0


def test_piecewise_linear_in_pixels(paper):
    # Between two profiled points the step time is linear in width*height*frames.
    a = paper.video_step("wan2.2-t2v-5b", 256, 256, 81, 2)
    b = paper.video_step("wan2.2-t2v-5b", 480, 480, 81, 2)
    x0, x1, x = 256 * 256 * 81, 480 * 480 * 81, 368 * 368 * 81
    expected = a + (b - a) * (x - x0) / (x1 - x0)
    assert paper.video_step("wan2.2-t2v-5b", 368, 368, 81, 2) == pytest.approx(expected)
    assert a < expected < b


def test_batch_interpolation_and_steps(paper):
    t2 = paper.image_latency("sd3.5-medium", 768, 768, 2)
    t4 = paper.image_latency("sd3.5-medium", 768, 768, 4)
    assert paper.image_latency("sd3.5-medium", 768, 768, 3) == pytest.approx((t2 + t4) / 2)
    assert t2 < 2 * paper.image_latency("sd3.5-medium", 768, 768, 1)  # batching helps
    # fewer steps, less time: encode + steps*step + decode
    full = paper.image_latency("sd3.5-medium", 1024, 1024, 1)
    half = paper.image_latency("sd3.5-medium", 1024, 1024, 1, steps=14)
    assert full - half == pytest.approx(14 * 0.088)


@pytest.mark.parametrize("call,msg", [
    (lambda p: p.video_step("nope", 256, 256, 81, 1), "unknown video model 'nope'"),
    (lambda p: p.image_latency("nope", 768, 768), "unknown image model"),
    (lambda p: p.video_step("wan2.2-t2v-5b", 1024, 1024, 81, 1), "outside the profiled range"),
    (lambda p: p.video_step("wan2.2-t2v-5b", 128, 128, 81, 1), "outside the profiled range"),
    (lambda p: p.video_step("wan2.2-t2v-5b", 256, 256, 81, 3), "SP degree 3 is not profiled"),
    (lambda p: p.image_latency("sd3.5-medium", 768, 768, 16), "batch 16"),
    (lambda p: p.image_latency("sd3.5-medium", 2048, 2048), "outside the profiled range"),
])
def test_lookup_errors(paper, call, msg):
    with pytest.raises(ProfileError, match=msg):
        call(paper)


def test_deadline_formula(paper):
    iso = paper.isolated_latency("image", "sd3.5-medium", 1024, 1024)
    assert deadline_for(paper, "image", "sd3.5-medium", 1024, 1024, 1, None, 10.0, 1.2) == pytest.approx(
        10.0 + 1.2 * 1.5 * iso)


def test_round_trip_and_bad_files(tmp_path, paper):
    again = Profile.from_dict(paper.to_dict())
    assert again.video_step("wan2.2-t2v-5b", 480, 480, 81, 2) == paper.video_step("wan2.2-t2v-5b", 480, 480, 81, 2)
    bad = paper.to_dict()
    bad["video_models"]["wan2.2-t2v-5b"]["points"][0]["step_s"].pop("1")
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(bad))
    with pytest.raises(ProfileError, match="SP degree 1 must be profiled"):
        Profile.load(f)
    f.write_text("{not json")
    with pytest.raises(ProfileError, match="invalid JSON at line 1"):
        Profile.load(f)
    with pytest.raises(ProfileError, match="not a bundled name"):
        Profile.load(tmp_path / "missing.json")


def test_tiny_profile_loads():
    tiny = Profile.load("tiny-cpu")
    assert tiny.isolated_latency("video", "tiny-wan", 64, 64, 9) > 0
    assert tiny.max_batch("tiny-sd3") == 8
