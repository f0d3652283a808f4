import numpy as np
import pytest

from genserve.core import TraceError
from genserve.profiles import Profile
from genserve.workloads import WorkloadSpec, arrival_times, generate_trace, parse_mix, read_trace, to_requests, write_trace


@pytest.fixture(scope="module")
def paper():
    return Profile.load("paper")


def test_same_seed_same_trace_byte_for_byte(tmp_path, paper):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    write_trace(generate_trace(WorkloadSpec(seed=7, arrival="bursty", resolutions="skewed"), paper), a)
    write_trace(generate_trace(WorkloadSpec(seed=7, arrival="bursty", resolutions="skewed"), paper), b)
    write_trace(generate_trace(WorkloadSpec(seed=8, arrival="bursty", resolutions="skewed"), paper), c)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_long_trace_matches_rate_mix_and_shares(paper):
    # 20,000 requests: rate within 3%, video share within 0.02, each of 3 sizes within 0.02 of 1/3.
    recs = generate_trace(WorkloadSpec(requests=20000, rate=30, mix="heavy", seed=1), paper)
    span = recs[-1].arrival
    assert 20000 / (span / 60) == pytest.approx(30, rel=0.03)
    videos = [r for r in recs if r.modality == "video"]
    assert len(videos) / len(recs) == pytest.approx(0.8, abs=0.02)
    for size in ((256, 256), (480, 480), (768, 768)):
        share = sum((r.width, r.height) == size for r in videos) / len(videos)
        assert share == pytest.approx(1 / 3, abs=0.02)


def test_bursty_has_higher_cv_than_poisson():
    rng = np.random.default_rng(0)
    cv = {}
    for kind in ("poisson", "bursty"):
        gaps = np.diff(arrival_times(kind, 24, 20000, rng))
        cv[kind] = gaps.std() / gaps.mean()
    assert cv["poisson"] == pytest.approx(1.0, abs=0.05)
    assert cv["bursty"] > 2.5  # asked for 3


def test_skewed_resolutions_are_uneven(paper):
    recs = generate_trace(WorkloadSpec(requests=3000, mix="heavy", resolutions="skewed", seed=3), paper)
    videos = [r for r in recs if r.modality == "video"]
    shares = sorted(sum(r.width == s for r in videos) / len(videos) for s in (256, 480, 768))
    assert shares[-1] - shares[0] > 0.1


@pytest.mark.parametrize("mix,share", [("light", 0.2), ("balanced", 0.5), ("heavy", 0.8), ("70:30", 0.7), ("1:3", 0.25)])
def test_parse_mix(mix, share):
    assert parse_mix(mix) == pytest.approx(share)


@pytest.mark.parametrize("mix", ["medium", "a:b", "0:0", "-1:2"])
def test_bad_mix(mix):
    with pytest.raises(ValueError):
        parse_mix(mix)


def test_trace_roundtrip_and_deadlines(tmp_path, paper):
    f = tmp_path / "t.jsonl"
    write_trace(generate_trace(WorkloadSpec(requests=50, seed=2), paper), f)
    reqs = to_requests(read_trace(f), paper, sigma=1.3)
    assert len(reqs) == 50
    for r in reqs:
        iso = paper.isolated_latency(r.modality.value, r.model, r.width, r.height, r.frames, r.steps)
        assert r.deadline - r.arrival == pytest.approx(1.3 * 1.5 * iso)
    assert [r.arrival for r in reqs] == sorted(r.arrival for r in reqs)


@pytest.mark.parametrize("line,msg", [
    ('{"id":"a","modality":"audio","model":"m","prompt":"p","width":8,"height":8,"arrival":0}', "field 'modality'"),
    ('{"id":"a","modality":"image","model":"m","prompt":"","width":8,"height":8,"arrival":0}', "field 'prompt'"),
    ('{"id":"a","modality":"image","model":"m","prompt":"p","width":-8,"height":8,"arrival":0}', "field 'width'"),
    ('{"id":"a","modality":"image","model":"m","prompt":"p","width":8,"height":8}', "field 'arrival'"),
    ('{"id":"a","modality":"image","model":"m","prompt":"p","width":8,"height":8,"arrival":0,"x":1}', "field 'x'"),
    ('{"id":"a", oops', "invalid JSON"),
    ('[1,2]', "expected a JSON object"),
])
def test_bad_trace_line_names_line_and_field(tmp_path, line, msg):
    good = '{"id":"g","modality":"image","model":"m","prompt":"p","width":8,"height":8,"arrival":0}'
    f = tmp_path / "bad.jsonl"
    f.write_text(good + "\n" + line + "\n")
    with pytest.raises(TraceError, match=r"bad.jsonl:2: .*") as e:
        read_trace(f)
    assert msg in str(e.value)


def test_duplicate_ids_and_unknown_models(tmp_path, paper):
    line = '{"id":"g","modality":"image","model":"sd3.5-medium","prompt":"p","width":768,"height":768,"arrival":0}'
    f = tmp_path / "dup.jsonl"
    f.write_text(line + "\n" + line + "\n")
    with pytest.raises(TraceError, match="dup.jsonl:2: field 'id': duplicate"):
        read_trace(f)
    f.write_text(line.replace("sd3.5-medium", "sdxl") + "\n")
    with pytest.raises(TraceError, match="unknown model 'sdxl'.*known image models"):
        to_requests(read_trace(f), paper)
