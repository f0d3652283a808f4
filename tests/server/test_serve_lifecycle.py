"""Start-up and shutdown of `genserve serve` as a real process: 503 while starting, draining on SIGTERM (503 for
new work, in-flight work finishes, exit 0), what a cut drain leaves is finished after a restart, stale
checkpoint folders swept, `--devices` lists, one log line per job event."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from server_helpers import make_settings, sim_engine
from typer.testing import CliRunner

from genserve.cli import app as cli_app
from genserve.core.errors import ValidationError
from genserve.profiles import Profile
from genserve.server.devices import parse_devices
from genserve.server.runner import free_port

GENSERVE = str(Path(sys.executable).with_name("genserve"))


class Served:
    """`genserve serve --engine sim` in its own process on a free 127.0.0.1 port; its output goes to a file."""

    def __init__(self, tmp: Path, *args: str, profile: Profile | None = None, env=None, argv=None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        cmd = argv or [GENSERVE, "serve"]
        cmd += ["--engine", "sim", "--port", str(self.port), "--data-dir", str(tmp / "data"), *args]
        if profile is not None:
            path = tmp / f"{profile.name}.json"
            path.write_text(json.dumps(profile.to_dict()))
            cmd += ["--profile", str(path)]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})

    def health(self) -> tuple[int, str] | None:
        try:
            r = httpx.get(self.url + "/health", timeout=2)
            return r.status_code, r.json()["status"]
        except httpx.HTTPError:
            return None

    def wait_ready(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while self.health() != (200, "ok"):
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < end, f"not ready after {timeout} s\n{self.output()}"
            time.sleep(0.02)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"still running {timeout} s later\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text()

    def post(self, path: str, **body) -> httpx.Response:
        return httpx.post(self.url + path, json=body, timeout=60)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture()
def served(tmp_path):
    started: list[Served] = []

    def start(*args, **kw) -> Served:
        s = Served(tmp_path, *args, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def _in_thread(fn, *args, **kw):
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn(*args, **kw)), daemon=True)
    t.start()
    return t, out


def _until(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while not (v := pred()):
        assert time.monotonic() < end, what
        time.sleep(0.02)
    return v


def test_sigterm_drains_in_flight_work_then_exits_0(served):
    # images of 20 steps take ~1 s on the simulated GPU (tiny-cpu x10): two are in flight at the signal
    srv = served("--devices", "1", "--drain-timeout", "20", profile=Profile.load("tiny-cpu").scaled(10, 2, "x10"))
    srv.wait_ready()
    video = srv.post("/v1/videos", prompt="v", size="32x32", num_inference_steps=20).json()["id"]
    images = [_in_thread(srv.post, "/v1/images/generations", prompt=f"i{k}", size="32x32",
                         num_inference_steps=20) for k in range(2)]
    _until(lambda: httpx.get(srv.url + "/health").json()["in_flight"] >= 3, 10, "all admitted")
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    assert _until(srv.health, 5, "answers while draining") == (503, "draining")
    r = srv.post("/v1/images/generations", prompt="late", size="32x32")
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable" and r.headers["retry-after"]
    r = srv.post("/v1/videos", prompt="late")
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    assert httpx.get(f"{srv.url}/v1/videos/{video}").status_code == 200  # callers can still follow their jobs
    assert srv.wait_exit(20) == 0
    took = time.monotonic() - t0
    for t, out in images:
        t.join(5)
        assert out and out[0].status_code == 200, out  # admitted before the signal: finished, not dropped
    assert took < 15, took  # it stopped once the work was done, not at the drain timeout
    log = srv.output()
    assert "draining: 3 jobs in flight" in log and "3 of 3 jobs finished" in log
    ids = [i for t, out in images for i in out[0].json()["genserve"]["ids"]] + [video]
    for i in ids:  # the job log follows each job from admission to its end
        assert f"event=admitted job={i}" in log and f"event=finished job={i}" in log, i


def test_cut_drain_leaves_videos_for_the_next_start_and_answers_images_503(served, tmp_path):
    slow = Profile.load("tiny-cpu").scaled(100, 20, "slow")  # a 20-step image ~10 s, a video ~6 s
    srv = served("--devices", "cpu,cpu", "--drain-timeout", "60", profile=slow)
    srv.wait_ready()
    videos = [srv.post("/v1/videos", prompt=f"v{k}", size="32x32", num_inference_steps=20).json()["id"]
              for k in range(3)]
    image = _in_thread(srv.post, "/v1/images/generations", prompt="i", size="32x32", num_inference_steps=20)
    _until(lambda: httpx.get(srv.url + "/health").json()["in_flight"] >= 4, 10, "all admitted")
    srv.proc.send_signal(signal.SIGTERM)
    _until(lambda: srv.health() == (503, "draining"), 5, "draining")
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)  # the second signal ends the drain now
    assert srv.wait_exit(10) == 0
    assert time.monotonic() - t0 < 8
    image[0].join(5)
    r = image[1][0]
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable" and r.headers["retry-after"]
    assert "second signal" in srv.output()

    from genserve.server.store import JobStore

    store = JobStore(tmp_path / "data" / "jobs.sqlite3")
    assert {store.get(v).status for v in videos} <= {"queued", "in_progress"}  # durable, re-submittable
    (img,) = [ln.split("job=")[1].split()[0] for ln in srv.output().splitlines() if "kind=image" in ln]
    img = store.get(img)
    assert img.status == "failed" and img.error_code == "interrupted"  # its caller was told to send it again
    store.close()

    again = served("--devices", "2", profile=Profile.load("tiny-cpu"))  # same data dir, normal speed
    again.wait_ready()
    for v in videos:  # nothing admitted is lost: every video completes after the restart
        got = _until(lambda: (j := httpx.get(f"{again.url}/v1/videos/{v}").json())["status"] in
                     ("completed", "failed") and j, 30, f"video {v} done")
        assert got["status"] == "completed", got
    again.proc.send_signal(signal.SIGINT)  # idle: SIGINT stops at once, exit status 0
    assert again.wait_exit(10) == 0


def test_drain_timeout_bounds_the_stop(served):
    slow = Profile.load("tiny-cpu").scaled(100, 1, "slow-images")
    srv = served("--drain-timeout", "1", profile=slow)
    srv.wait_ready()
    image = _in_thread(srv.post, "/v1/images/generations", prompt="i", size="32x32", num_inference_steps=20)
    _until(lambda: httpx.get(srv.url + "/health").json()["in_flight"] >= 1, 10, "admitted")
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0
    assert 1.0 <= time.monotonic() - t0 < 5
    image[0].join(5)
    assert image[1][0].status_code == 503


def test_port_answers_503_while_the_engine_starts(tmp_path):
    """The socket answers from the start: /health 'starting', /v1 503 with Retry-After, until the engine is up."""
    from genserve.server import create_app
    from genserve.server.lifecycle import Server
    from genserve.server.runner import bind

    gate = threading.Event()
    engine = sim_engine(tmp_path)
    real_start = engine.start

    def slow_start():
        assert gate.wait(20)
        real_start()

    engine.start = slow_start
    app = create_app(engine, make_settings(tmp_path, engine_kind="sim"))
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    import uvicorn

    server = Server(uvicorn.Config(app, log_level="warning"), app.state.lifecycle)
    th = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    try:
        h = _until(lambda: _get(url + "/health"), 5, "answers while starting")
        assert h.status_code == 503 and h.json()["status"] == "starting"
        for r in (httpx.post(url + "/v1/videos", json={"prompt": "x"}), httpx.get(url + "/v1/models")):
            assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable" and r.headers["retry-after"]
        gate.set()
        _until(lambda: _get(url + "/health").status_code == 200, 10, "ready")
        r = httpx.post(url + "/v1/images/generations", json={"prompt": "x", "size": "32x32"}, timeout=10)
        assert r.status_code == 200
    finally:
        gate.set()
        server.should_exit = True
        th.join(20)


def _get(url):
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


def test_engine_that_cannot_start_exits_non_zero_with_one_error_line(served):
    # a real `genserve serve` process whose engine raises in start() (as a worker that cannot start does)
    boot = ("import sys; from genserve.executors.sim import SimExecutor\n"
            "def boom(self): raise RuntimeError('worker 0 failed to start: no such device')\n"
            "SimExecutor.start = boom\n"
            "from genserve.cli import app; sys.argv[0] = 'genserve'; app()\n")
    srv = served(argv=[sys.executable, "-c", boot, "serve"])
    assert srv.wait_exit(30) == 1
    errors = [ln for ln in srv.output().splitlines() if ln.startswith("error:")]
    assert errors == ["error: the sim engine did not start: worker 0 failed to start: no such device"], \
        srv.output()


def test_sigterm_while_starting_exits_0_once_the_start_returns(served, tmp_path):
    # the "model load" lasts until the test creates a file, so the starting window does not depend on how fast
    # this (shared, noisy) machine imports and binds
    loaded = tmp_path / "loaded"
    boot = ("import os, sys, time; from genserve.executors.sim import SimExecutor\n"
            "def load(self):\n"
            "    while not os.path.exists(os.environ['LOADED']): time.sleep(0.02)\n"
            "SimExecutor.start = load\n"
            "from genserve.cli import app; sys.argv[0] = 'genserve'; app()\n")
    srv = served(argv=[sys.executable, "-c", boot, "serve"], env={"LOADED": str(loaded)})
    _until(lambda: srv.health() == (503, "starting"), 60, "answers 503 while starting")
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert srv.proc.poll() is None  # a model load in progress is waited for
    loaded.touch()
    assert srv.wait_exit(20) == 0
    assert "error" not in srv.output().lower(), srv.output()


def test_signals_are_taken_back_from_an_engine_that_took_them(served):
    # Ray's core worker puts a C-level SIGTERM handler over ours in ray.init (then aborts at exit: status -6);
    # here the engine's start resets SIGTERM to the default action behind Python's back
    boot = ("import ctypes, signal, sys; from genserve.executors.sim import SimExecutor\n"
            "SimExecutor.start = lambda self: ctypes.CDLL(None).signal(signal.SIGTERM, 0)  # SIG_DFL\n"
            "from genserve.cli import app; sys.argv[0] = 'genserve'; app()\n")
    srv = served(argv=[sys.executable, "-c", boot, "serve"])
    srv.wait_ready()
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0, srv.output()
    assert "drained in" in srv.output()


@pytest.mark.parametrize("args, want", [
    (("cuda:0,cuda:1", None, None), ["cuda:0", "cuda:1"]),
    ((" CPU , cpu ", None, None), ["cpu", "cpu"]),
    (("3", None, "cuda"), ["cuda:0", "cuda:1", "cuda:2"]),
    ((None, 4, None), ["cpu"] * 4),
    ((None, None, None), ["cpu", "cpu"]),
])
def test_parse_devices(args, want):
    assert parse_devices(*args) == want


@pytest.mark.parametrize("argv, message", [
    (["--devices", "cuda:0,,cuda:1"], "an empty entry is not a device"),
    (["--devices", "gpu0"], "'gpu0' is not a device"),
    (["--devices", "cuda:0,cpu"], "mixes CPU slots and GPUs"),
    (["--devices", "cuda:1,cuda:1"], "cuda:1 more than once"),
    (["--devices", "0"], "must be positive"),
    (["--devices", "2", "--workers", "2"], "not both"),
    (["--devices", "cpu,cpu", "--device", "cuda"], "contradicts"),
    (["--device", "tpu"], "--device must be cpu or cuda"),
])
def test_bad_devices_are_clear_errors(argv, message):
    r = CliRunner().invoke(cli_app, ["serve", "--engine", "sim", *argv])
    assert r.exit_code == 2 and r.output.startswith("error: ") and message in r.output, r.output


def test_gpu_lists_pin_the_visible_devices(monkeypatch):
    from genserve.server.devices import pin_gpus

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert pin_gpus(["cuda:0", "cuda:1"]) == ["cuda:0", "cuda:1"] and "CUDA_VISIBLE_DEVICES" not in os.environ
    assert pin_gpus(["cuda:3", "cuda:1"]) == ["cuda:0", "cuda:1"]  # workers use cuda:i: make those two visible
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert pin_gpus(["cuda:2", "cuda:3"]) == ["cuda:0", "cuda:1"] and os.environ["CUDA_VISIBLE_DEVICES"] == "6,7"
    with pytest.raises(ValidationError, match="shows only 2 GPUs"):
        pin_gpus(["cuda:2"])


def test_port_in_use_is_a_clean_error():
    from genserve.server.runner import bind

    with bind("127.0.0.1", 0) as taken:
        r = CliRunner().invoke(cli_app, ["serve", "--engine", "sim", "--port", str(taken.getsockname()[1])])
    assert r.exit_code == 2 and r.output.startswith("error: cannot listen on 127.0.0.1:"), r.output


def test_devices_list_and_workers_start_a_server(served):
    srv = served("--devices", "cuda:0,cuda:1,cuda:2")
    srv.wait_ready()
    assert "engine=sim (3 simulated GPUs)" in srv.output()
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0
    old = served("--workers", "3")
    old.wait_ready()
    assert "engine=sim (3 simulated GPUs)" in old.output()


def test_stale_checkpoint_folders_are_swept_live_ones_kept():
    from genserve.executors.local import LocalExecutor

    code = ("import sys, time; from genserve.executors.local import LocalExecutor\n"
            "ex = LocalExecutor(1); (ex.spool / 'video_x.state').write_bytes(b'state')\n"
            "print(ex.spool, flush=True); time.sleep(120)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        dead, live = (Path(p.stdout.readline().strip()) for p in procs)
        assert dead.is_dir() and live.is_dir() and str(procs[0].pid) in dead.name
        procs[0].kill()  # SIGKILL: no atexit, no cleanup
        procs[0].wait(10)
        assert (dead / "video_x.state").exists()  # left behind
        ex = LocalExecutor(1)
        try:
            assert not dead.exists()  # swept at start
            assert (live / "video_x.state").exists()  # a live owner's folder is never touched
            assert ex.spool.is_dir() and f"-{os.getpid()}-" in ex.spool.name
        finally:
            ex.close()
        assert not ex.spool.exists()
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
        from genserve.executors import spool

        spool.sweep()  # leave no folder of ours behind


def test_job_log_follows_a_paused_and_resumed_video(caplog):
    from genserve.core.request import Modality, Request
    from genserve.engine.runtime import make_engine

    engine = make_engine("sim", profile="tiny-cpu", policy="srtf", gpus=1)  # SRTF pauses the video for the image
    engine.start()
    try:
        with caplog.at_level(logging.INFO, logger="genserve.jobs"):
            now = engine.now
            engine.submit(Request("v1", Modality.VIDEO, "tiny-wan", "p", 64, 64, 30, 1, now, now + 60, frames=17))
            _until(lambda: engine.status("v1").steps_done >= 3, 10, "video running")
            now = engine.now
            engine.submit(Request("i1", Modality.IMAGE, "tiny-sd3", "p", 32, 32, 4, 1, now, now + 0.001))
            engine.wait("v1", 20)
            engine.wait("i1", 20)
            now = engine.now
            engine.submit(Request("v2", Modality.VIDEO, "tiny-wan", "p", 64, 64, 200, 1, now, now + 60, frames=17))
            _until(lambda: engine.status("v2").steps_done >= 1, 10, "v2 running")
            engine.cancel("v2")
            engine.wait("v2", 10)
    finally:
        engine.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "genserve.jobs"]

    def events(job):
        return [ln.split()[0].split("=")[1] for ln in lines if f" job={job} " in ln + " "]

    assert events("v1") == ["admitted", "started", "paused", "resumed", "finished"], lines
    assert events("i1") == ["admitted", "started", "finished"], lines
    assert events("v2") == ["admitted", "started", "cancelled"], lines
    (paused,) = [ln for ln in lines if ln.startswith("event=paused job=v1")]
    assert "step=" in paused and "gpu=0" in paused
    (fin,) = [ln for ln in lines if ln.startswith("event=finished job=i1")]
    assert "deadline=missed" in fin and "latency_s=" in fin and "deadline_s=0.001" in fin
    (fin,) = [ln for ln in lines if ln.startswith("event=finished job=v1")]
    assert "deadline=met" in fin


class _Widens:
    """Starts each video on GPU 0 and moves it to SP 2 once 3 steps are done; raises for a video named 'bug'."""

    name = "widens"
    preemptive = True

    def plan(self, snap):
        from genserve.core.plan import Action, ActionKind, Plan
        from genserve.core.request import RequestStatus

        plan = Plan()
        for v in snap.videos:
            if v.id == "bug":
                raise RuntimeError("policy bug")
            if v.status is RequestStatus.QUEUED:
                plan.actions[v.id] = Action(ActionKind.START, (0,))
            elif len(v.gpus) == 1 and v.steps_done >= 3 and not v.decoding:
                plan.actions[v.id] = Action(ActionKind.RECONFIGURE, (0, 1))
            else:
                plan.actions[v.id] = Action(ActionKind.CONTINUE, v.gpus)
        return plan


def test_job_log_sp_change_and_failure_reason(caplog):
    from genserve.core.request import Modality, Request
    from genserve.engine.runtime import make_engine

    engine = make_engine("sim", profile="tiny-cpu", policy=_Widens(), gpus=2)
    engine.start()
    try:
        with caplog.at_level(logging.INFO, logger="genserve.jobs"):
            now = engine.now
            engine.submit(Request("v3", Modality.VIDEO, "tiny-wan", "p", 64, 64, 20, 1, now, now + 60, frames=17))
            engine.wait("v3", 20)
            engine.submit(Request("bug", Modality.VIDEO, "tiny-wan", "p", 64, 64, 20, 1, now, now + 60, frames=17))
            engine.wait("bug", 20)
    finally:
        engine.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "genserve.jobs"]
    assert [ln.split()[0] for ln in lines if " job=v3 " in ln] == \
        ["event=admitted", "event=started", "event=sp_change", "event=finished"], lines
    (sp,) = [ln for ln in lines if ln.startswith("event=sp_change")]
    assert "from=1 to=2" in sp and "step=3/20" in sp and "gpus=0,1" in sp
    (failed,) = [ln for ln in lines if ln.startswith("event=failed job=bug")]
    assert 'reason="engine error: RuntimeError: policy bug"' in failed, failed
