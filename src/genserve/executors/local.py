"""The local executor: one worker process per device running real diffusers models, SP groups across them.

`LocalExecutor` implements `genserve.executors.base.Executor`, so the same `Controller` and policies that drive
the simulator drive it. Workers (`genserve.workers.worker`) are started with torch.multiprocessing (forkserver
with torch/diffusers preloaded, so a restart takes well under a second; or spawn), each on `cuda:i` or on a CPU
"slot" limited to `threads` threads, all in one torch.distributed world (gloo on CPU, NCCL on CUDA) with every
aligned SP group created at start (D's `GroupRegistry`).

How a video's state moves
-------------------------
* A running video has an identical copy of its state on every rank of its SP group. The executor tracks which
  ranks hold a copy (`holders`). A step on the same group needs nothing; a step after a pause (RESUME) or an SP
  change (RECONFIGURE) names the rank that holds it (`src`) and the workers move it with D's `move_state`
  (`State.to_bytes` on the holder, point to point to the new leader, broadcast in the pre-created group).
* Pausing keeps the state on the leader in memory (the other ranks drop their copies).
* Checkpoints: after every `checkpoint_every`-th step (and the last one, and at a pause) the leader writes the
  state (`State.to_bytes`) atomically to a spool file (tmpfs when available). Nothing reads it in normal
  operation; it is what survives a worker crash.

Faults
------
* A worker that dies (its process sentinel fires / its pipe closes) is restarted on the same device, and every
  live worker re-forms the torch.distributed world with it (`reinit`: a new rendezvous port, every SP group built
  again). Work that involved the dead rank is recovered: a video step in flight is run again from the last
  checkpoint on its group (the controller sees a slow step: at most the step in flight is lost); a decode runs
  again from the checkpoint; an image batch is reported `Failed(retryable=True)` so the controller queues the
  images again. A video with no checkpoint is reported `Failed(retryable=True)` (it restarts from its first step).
  Ranks still blocked in a collective with the dead rank after `stuck_grace_s` are killed and restarted too.
* A worker that raises reports the exception: the request fails with that reason (`Failed(retryable=False)`).
  In an SP group the raising rank also exits, which releases its peers from the collective at once.
* After `max_restarts` deaths of one rank the rank is given up: its work fails with a clear reason.
* `close()` stops every worker (stop command, join with timeout, then terminate, then kill), stops the forkserver
  it started, and removes the checkpoints. An atexit hook and a SIGTERM handler close executors still open.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import signal
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import Callable, Sequence

from genserve.core.events import BatchDone, Event, Failed, StepDone, VideoDone
from genserve.core.request import Request
from genserve.core.snapshot import ClusterSpec
from genserve.executors import spool
from genserve.executors.base import StepSetup
from genserve.workers.protocol import WorkerConfig

__all__ = ["LocalExecutor", "WorkerStartError"]

_LIVE: "weakref.WeakSet[LocalExecutor]" = weakref.WeakSet()
_PRELOAD = ["torch", "torch.distributed", "diffusers", "transformers", "genserve.models", "genserve.parallel.wan",
            "genserve.parallel.state", "genserve.workers.worker"]


class WorkerStartError(RuntimeError):
    """Workers could not be started (the message carries the worker's own error)."""


@dataclass
class _Job:
    seq: int
    op: str
    ranks: tuple[int, ...]  # every rank the command was sent to
    leader: int
    rid: str | None = None
    rids: tuple[str, ...] = ()
    step: int = -1
    gpus: tuple[int, ...] = ()
    src: object = None
    ckpt_now: bool = False
    setup: str = ""
    pending: set = field(default_factory=set)
    status: str = "running"  # running | done | failed | superseded
    comm_failed_at: float | None = None
    error: str | None = None
    sent_at: float = 0.0


@dataclass
class _Video:
    request: Request
    spec: dict
    ckpt: str
    holders: set = field(default_factory=set)
    ckpt_step: int = -1  # the step count saved in the checkpoint file (-1: none)
    steps_done: int = 0
    gpus: tuple[int, ...] = ()
    step_reply_at: float | None = None  # perf_counter when the last StepDone was received (overhead metric)


@dataclass
class _Handle:
    rank: int
    proc: object = None
    cmd: object = None  # Connection (send end)
    res: object = None  # Connection (receive end)
    pid: int | None = None
    alive: bool = False
    ready: bool = False
    joined_gen: int = -1  # the world generation this process has joined (ready, or reinit done)
    spawn_gen: int = 0
    outstanding: "OrderedDict[int, _Job]" = field(default_factory=OrderedDict)
    last_reply: float = 0.0
    restarts: int = 0
    given_up: bool = False
    info: dict = field(default_factory=dict)

    def close_pipes(self) -> None:
        """Mark the worker gone and close both pipe ends (a dead peer may have closed them already)."""
        self.alive = False
        for conn in (self.cmd, self.res):
            try:
                if conn is not None:
                    conn.close()
            except OSError:
                pass


def _spec(r: Request) -> dict:
    return {"prompt": r.prompt, "width": r.width, "height": r.height, "steps": r.steps, "seed": r.seed,
            "frames": r.frames, "guidance_scale": r.guidance_scale, "negative_prompt": r.negative_prompt, "id": r.id}


def _safe(rid: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in rid)[:80]
    return f"{keep}-{hashlib.sha1(rid.encode()).hexdigest()[:8]}"


class LocalExecutor:
    """Worker processes on this machine; see the module docstring.

    num_workers: devices (CUDA GPUs when device="cuda", else CPU slots). clock: the engine's clock (events are
    stamped with it; give the Controller the same one). output_dir: where PNG/MP4 files go.
    """

    def __init__(self, num_workers: int, *, device: str = "cpu", image_model: str = "tiny-sd3",
                 video_model: str = "tiny-wan", output_dir: str | os.PathLike | None = None, threads: int = 1,
                 dtype: str | None = None, gpus_per_node: int | None = None,
                 sp_degrees: tuple[int, ...] = (1, 2, 4, 8), clock=None, checkpoint_every: int = 1,
                 start_method: str = "forkserver", startup_timeout_s: float = 300.0, max_restarts: int = 3,
                 stuck_grace_s: float = 2.0, comm_fail_grace_s: float = 3.0, spool_dir: str | None = None,
                 sp_mode: str = "auto", dist_timeout_s: float = 120.0, fps: int = 8, save_raw: bool = False,
                 command_timeout_s: float | None = 600.0) -> None:
        if num_workers <= 0:
            raise ValueError(f"num_workers must be positive, got {num_workers}")
        if device.startswith("cuda"):
            device = "cuda"
        self.cfg = WorkerConfig(world_size=num_workers, device=device, image_model=image_model,
                                video_model=video_model, dtype=dtype, threads=threads,
                                gpus_per_node=gpus_per_node or num_workers, sp_degrees=tuple(sp_degrees),
                                dist_timeout_s=dist_timeout_s, sp_mode=sp_mode, fps=fps, save_raw=save_raw)
        self.cluster = ClusterSpec(num_workers, self.cfg.gpus_per_node, self.cfg.sp_degrees)
        if clock is None:
            from genserve.engine.clock import WallClock

            clock = WallClock()
        self.clock = clock
        self.checkpoint_every = checkpoint_every
        self.start_method = start_method
        self.startup_timeout_s = startup_timeout_s
        self.max_restarts = max_restarts
        self.stuck_grace_s = stuck_grace_s
        self.comm_fail_grace_s = comm_fail_grace_s
        self.command_timeout_s = command_timeout_s
        self._own_output = output_dir is None
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="genserve-out-"))
        self._spool_lock: int | None = None
        if spool_dir:  # the caller's (e.g. shared by Ray nodes)
            self.spool = Path(spool_dir)
            self.spool.mkdir(parents=True, exist_ok=True)
        else:  # ours on /dev/shm; folders left by killed owners are swept first
            self.spool, self._spool_lock = spool.make()
        self._emit: Callable[[Event], None] | None = None
        self._lock = threading.RLock()
        self._handles = [_Handle(r) for r in range(num_workers)]
        self._jobs: dict[int, _Job] = {}
        self._videos: dict[str, _Video] = {}
        self._seq = 0
        self._gen = 0
        self._port = 0
        self._ctx = None
        self._started_forkserver = False
        self.forkserver_pid: int | None = None
        self._listener: threading.Thread | None = None
        self._closing = False
        self._closed = False
        self._started = False
        self._death_at = 0.0
        self._ready_cv = threading.Condition(self._lock)
        self.outputs: dict[str, str] = {}
        self.all_pids: list[int] = []  # every worker process ever started (restarts included)
        # metrics
        self.step_overheads: list[float] = []  # s between a StepDone reply arriving and the next step command
        self.step_durations: list[tuple[str, int, str, float]] = []  # (rid, degree, setup, worker-measured s)
        self.op_times: dict[str, list[float]] = {}  # op -> command round trips (send to last reply), seconds
        self.op_durations: dict[str, list[tuple]] = {}  # "batch" / "decode" -> (request ids, worker-measured s)
        self.restarts = 0
        self.recovered_steps = 0
        self.log: list[tuple[float, str, str]] = []  # (engine time, kind, text): faults, restarts, failures

    # ---- life cycle ------------------------------------------------------------------------------------------
    @property
    def num_workers(self) -> int:
        return self.cfg.world_size

    def attach(self, emit: Callable[[Event], None]) -> None:
        self._emit = emit

    def start(self) -> "LocalExecutor":
        """Start every worker and wait until all have joined the world and loaded both models."""
        if self._listener is not None:
            return self
        self._open()
        _LIVE.add(self)
        _install_exit_hooks()
        with self._lock:
            self._port = self._new_port()
            for h in self._handles:
                self._spawn(h)
        if self.start_method == "forkserver":
            from multiprocessing import forkserver

            self.forkserver_pid = forkserver._forkserver._forkserver_pid  # noqa: SLF001
        self._listener = threading.Thread(target=self._listen, daemon=True, name="genserve-local-listener")
        self._listener.start()
        deadline = time.monotonic() + self.startup_timeout_s
        error = None
        with self._ready_cv:
            while not all(h.ready for h in self._handles):
                failed = [h for h in self._handles if h.given_up]
                if failed:
                    error = f"worker {failed[0].rank} failed to start: {failed[0].info.get('error', 'it exited')}"
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    error = f"workers not ready after {self.startup_timeout_s:.0f}s"
                    break
                self._ready_cv.wait(timeout=min(left, 0.5))
            self._started = error is None
        if error is not None:
            self.close()
            raise WorkerStartError(error)
        return self

    # ---- transport hooks (the Ray executor overrides these) ---------------------------------------------------------
    def _open(self) -> None:
        """Prepare the process context (the forkserver preloads torch, diffusers and the model code once)."""
        import torch.multiprocessing as mp

        method = self.start_method
        if method == "forkserver":
            from multiprocessing import forkserver

            if forkserver._forkserver._forkserver_pid is None:  # noqa: SLF001 - not started yet: preload it
                self._started_forkserver = True
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(_PRELOAD)
        else:
            ctx = mp.get_context(method)
        self._ctx = ctx

    def _new_port(self) -> int:
        """A free port on the master's host for a new rendezvous (this host for local workers)."""
        from genserve.parallel.groups import free_port

        return free_port()

    def _kill(self, h: _Handle) -> None:
        try:
            os.kill(h.pid, signal.SIGKILL)
        except (OSError, TypeError):
            pass

    def _stop_workers(self) -> None:
        """After `stop` was sent: join with a timeout, then terminate, then kill."""
        procs = [h.proc for h in self._handles if h.proc is not None]
        deadline = time.monotonic() + 5.0
        for p in procs:
            p.join(timeout=max(0.05, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
                p.join(timeout=2.0)

    def _after_close(self) -> None:
        if self._started_forkserver and not any(not e._closed for e in list(_LIVE)):
            _stop_forkserver()

    def _spawn(self, h: _Handle) -> None:
        """Start (or restart) the process of rank h.rank; it joins the world of the current generation."""
        from genserve.workers.worker import worker_main

        ctx = self._ctx
        cmd_r, cmd_w = ctx.Pipe(duplex=False)
        res_r, res_w = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=worker_main, args=(h.rank, self.cfg, self._port, cmd_r, res_w),
                           name=f"genserve-worker-{h.rank}", daemon=True)
        proc.start()
        cmd_r.close()
        res_w.close()
        h.proc, h.cmd, h.res, h.pid = proc, cmd_w, res_r, proc.pid
        self.all_pids.append(proc.pid)
        h.alive, h.ready = True, False
        h.spawn_gen = self._gen
        h.last_reply = time.perf_counter()

    def close(self) -> None:
        """Stop every worker; no process of this executor survives. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closing = True
            for h in self._handles:
                if h.alive and h.cmd is not None:
                    try:
                        h.cmd.send({"op": "stop"})
                    except (OSError, ValueError):
                        pass
        self._stop_workers()
        with self._lock:
            self._closed = True
            for h in self._handles:
                h.close_pipes()
        if self._listener is not None and self._listener is not threading.current_thread():
            self._listener.join(timeout=2.0)
        _LIVE.discard(self)
        self._after_close()
        spool.remove(self.spool, self._spool_lock)

    def __enter__(self) -> "LocalExecutor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- introspection (tests, benchmarks) -------------------------------------------------------------------------
    def worker_pids(self) -> list[int | None]:
        with self._lock:
            return [h.pid if h.alive else None for h in self._handles]

    def kill_worker(self, rank: int) -> int:
        """SIGKILL one worker process (fault injection); returns its pid. Recovery follows automatically."""
        h = self._handles[rank]
        pid = h.pid
        self._kill(h)
        return pid

    def inject_fault(self, rank: int, request_id: str, kind: str = "raise") -> None:
        """Test hook: the next step of `request_id` on `rank` raises ("raise") or exits the process ("exit")."""
        with self._lock:
            self._send_job("fault", (rank,), rank, rid=request_id, extra={"kind": kind})

    def busy(self) -> bool:
        with self._lock:
            return any(j.status == "running" for j in self._jobs.values())

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.busy():
                return True
            time.sleep(0.01)
        return False

    def ready_all(self) -> bool:
        with self._lock:
            return all(h.ready and h.alive for h in self._handles)

    # ---- commands (Executor protocol) ------------------------------------------------------------------------------
    def start_batch(self, requests: Sequence[Request], gpu: int) -> None:
        reqs = list(requests)
        paths = [str(self.output_dir / "images" / f"{_safe(r.id)}.png") for r in reqs]
        events: list[Event] = []
        with self._lock:
            if self._handles[gpu].given_up:
                events.append(Failed(self.clock.now(), tuple(r.id for r in reqs), (gpu,),
                                     f"worker {gpu} was given up after repeated crashes", False))
            else:
                self._send_job("batch", (gpu,), gpu, rids=tuple(r.id for r in reqs),
                               extra={"specs": [_spec(r) for r in reqs], "paths": paths})
        self._flush(events)

    def run_step(self, request: Request, step: int, gpus: tuple[int, ...], setup: StepSetup,
                 source_gpu: int | None = None) -> None:
        t_cmd = time.perf_counter()
        gpus = tuple(gpus)
        events: list[Event] = []
        with self._lock:
            rid = request.id
            v = self._videos.get(rid)
            if setup is StepSetup.FRESH or v is None:
                if v is not None:  # started again (after a Failed): drop what the first attempt left behind
                    self._forget(rid)
                v = _Video(request, _spec(request), str(self.spool / f"{_safe(rid)}.state"))
                self._videos[rid] = v
                src: object = "fresh"
            else:
                if v.step_reply_at is not None:
                    _capped(self.step_overheads, t_cmd - v.step_reply_at)
                    v.step_reply_at = None
                src = self._source(v, gpus, setup, source_gpu)
            dead = [g for g in gpus if self._handles[g].given_up]
            if src is False or dead:
                reason = (f"worker(s) {dead} were given up after repeated crashes" if dead else
                          f"the state of {rid} was lost (no worker holds it and there is no checkpoint)")
                events.append(Failed(self.clock.now(), (rid,), gpus, reason, not dead))
                self._forget(rid)
            else:
                self._send_step(v, step, gpus, src, setup.value)
        self._flush(events)

    def _source(self, v: _Video, gpus: tuple[int, ...], setup: StepSetup, source_gpu: int | None):
        """Where the state of `v` comes from for a step on `gpus`: None (all of gpus hold it), a rank, "file"."""
        holders = v.holders
        if setup is StepSetup.CONTINUE and holders.issuperset(gpus):
            return None
        if source_gpu is not None and source_gpu in holders:
            return source_gpu
        inside = sorted(holders.intersection(gpus))
        if inside:
            return inside[0]
        if holders:
            return min(holders)
        if v.ckpt_step >= 0 and Path(v.ckpt).exists():
            return "file"
        return False

    def _send_step(self, v: _Video, step: int, gpus: tuple[int, ...], src, setup: str) -> _Job:
        rid = v.request.id
        every = self.checkpoint_every
        last = step + 1 >= v.request.steps
        ckpt_now = every > 0 and (last or (step + 1) % every == 0)
        ranks = set(gpus)
        if isinstance(src, int):
            ranks.add(src)
        stale = v.holders - ranks
        for g in sorted(stale):  # copies left on ranks outside the new group
            if self._handles[g].alive:
                self._send_job("drop", (g,), g, rid=rid)
        job = self._send_job("step", tuple(sorted(ranks)), gpus[0], rid=rid, step=step, gpus=gpus, src=src,
                             ckpt_now=ckpt_now, setup=setup,
                             extra={"spec": v.spec if src == "fresh" else None, "ckpt": v.ckpt})
        v.holders = set(gpus)
        v.gpus = gpus
        return job

    def pause(self, request: Request, gpu: int) -> None:
        with self._lock:
            v = self._videos.get(request.id)
            if v is None:
                return
            for g in sorted(v.holders - {gpu}):
                if self._handles[g].alive:
                    self._send_job("drop", (g,), g, rid=request.id)
            ckpt_now = self.checkpoint_every > 0 and v.ckpt_step != v.steps_done
            if gpu in v.holders:
                self._send_job("pause", (gpu,), gpu, rid=request.id, ckpt_now=ckpt_now, extra={"ckpt": v.ckpt})
                v.holders = {gpu}
            else:
                v.holders = set()
            v.step_reply_at = None

    def decode(self, request: Request, gpu: int) -> None:
        events: list[Event] = []
        with self._lock:
            v = self._videos.get(request.id)
            if v is None:
                events.append(Failed(self.clock.now(), (request.id,), (gpu,), "decode of an unknown video", False))
            else:
                for g in sorted(v.holders - {gpu}):
                    if self._handles[g].alive:
                        self._send_job("drop", (g,), g, rid=request.id)
                self._send_decode(v, gpu)
                v.step_reply_at = None
        self._flush(events)

    def _send_decode(self, v: _Video, gpu: int) -> _Job:
        path = str(self.output_dir / "videos" / f"{_safe(v.request.id)}.mp4")
        v.holders = set()
        return self._send_job("decode", (gpu,), gpu, rid=v.request.id, extra={"path": path, "ckpt": v.ckpt})

    def discard(self, request: Request, gpus: tuple[int, ...]) -> None:
        with self._lock:
            v = self._videos.get(request.id)
            targets = set(gpus) | (v.holders if v is not None else set())
            for g in sorted(targets):
                if self._handles[g].alive:
                    self._send_job("drop", (g,), g, rid=request.id)
            self._forget(request.id)

    def _forget(self, rid: str) -> None:
        """Stop tracking a video: drop the copies still held by live workers, delete its checkpoint."""
        v = self._videos.pop(rid, None)
        if v is not None:
            for g in sorted(v.holders):
                if self._handles[g].alive:
                    self._send_job("drop", (g,), g, rid=rid)
            v.holders = set()
            try:
                os.unlink(v.ckpt)
            except OSError:
                pass

    # ---- sending -----------------------------------------------------------------------------------------------------
    def _send_job(self, op: str, ranks: tuple[int, ...], leader: int, *, rid: str | None = None,
                  rids: tuple[str, ...] = (), step: int = -1, gpus: tuple[int, ...] = (), src=None,
                  ckpt_now: bool = False, setup: str = "", extra: dict | None = None) -> _Job:
        """Send one command to every rank of `ranks` (under the lock, so all ranks see commands in one order)."""
        self._seq += 1
        job = _Job(self._seq, op, tuple(ranks), leader, rid, rids, step, gpus, src, ckpt_now, setup,
                   pending=set(ranks), sent_at=time.perf_counter())
        msg = {"op": op, "seq": job.seq, "rid": rid, "rids": list(rids), "step": step, "gpus": list(gpus),
               "src": src, "ckpt_now": ckpt_now}
        if extra:
            msg.update(extra)
        self._jobs[job.seq] = job
        for r in ranks:
            h = self._handles[r]
            h.outstanding[job.seq] = job
            try:
                h.cmd.send(msg)
            except (OSError, ValueError, AttributeError):
                pass  # the process is dead or dying: the death handler recovers this job
        return job

    def _flush(self, events: list[Event]) -> None:
        emit = self._emit
        if emit is None:
            return
        for ev in events:
            emit(ev)

    # ---- listening ---------------------------------------------------------------------------------------------------
    def _listen(self) -> None:
        """The listener thread: replies, deaths, watchdog. An internal error is logged, never fatal to the thread
        (a dead listener would silently stop every event)."""
        import logging
        import traceback

        while not self._closed:
            try:
                self._listen_once()
            except Exception as e:  # noqa: BLE001
                self.log.append((self.clock.now(), "listener-error", f"{type(e).__name__}: {e}"))
                logging.getLogger("genserve.executors.local").error("listener error: %s", traceback.format_exc())
                time.sleep(0.01)

    def _listen_once(self) -> None:
        with self._lock:
            if self._closed:
                return
            conns = {}
            for h in self._handles:
                if h.alive and h.res is not None:
                    conns[h.res] = (h, h.proc)
                    conns[h.proc.sentinel] = (h, h.proc)
        try:
            ready = mp_wait(list(conns), timeout=0.1)
        except (OSError, ValueError):
            ready = []
        events: list[Event] = []
        with self._lock:
            if self._closed:
                return
            dead: list[_Handle] = []
            for obj in ready:
                h, proc = conns[obj]
                if not h.alive or h.proc is not proc or h in dead:
                    continue  # a process already handled (and perhaps replaced) in this round
                if obj is h.res:
                    if not self._drain(h, events):
                        dead.append(h)
                elif not self._closing:
                    self._drain(h, events)
                    dead.append(h)
            for h in dead:
                if not self._closing:
                    self._on_death(h, events)
                else:
                    h.alive = False
            if not self._closing:
                self._watchdog(events)
        self._flush(events)

    def _drain(self, h: _Handle, events: list[Event]) -> bool:
        """Read every reply waiting on h's pipe; False when the pipe is closed (the process is gone)."""
        try:
            while h.res.poll():
                msg = h.res.recv()
                self._on_reply(h, msg, events)
        except (EOFError, OSError):
            return False
        return True

    def _on_reply(self, h: _Handle, msg: tuple, events: list[Event]) -> None:
        kind = msg[0]
        now_pc = time.perf_counter()
        h.last_reply = now_pc
        if kind == "ready":
            h.ready = True
            h.joined_gen = h.spawn_gen
            h.pid = msg[2]
            h.info = msg[3]
            self._ready_cv.notify_all()
            return
        if kind == "fatal":
            h.info = {"error": msg[2], "traceback": msg[3]}
            self.log.append((self.clock.now(), "worker-fatal", f"rank {h.rank}: {msg[2]}"))
            return
        seq = msg[1]
        job = self._jobs.get(seq)
        h.outstanding.pop(seq, None)
        if job is None:
            return
        job.pending.discard(h.rank)
        if kind == "ok":
            self._on_ok(job, h.rank, msg[2], events, now_pc)
        else:
            self._on_err(job, h.rank, msg[2], bool(msg[3]), events)
        if not job.pending:
            if job.status == "running":
                job.status = "done"
            if job.status == "done":
                _capped(self.op_times.setdefault(job.op, []), now_pc - job.sent_at)
            self._jobs.pop(seq, None)

    def _on_ok(self, job: _Job, rank: int, payload: dict, events: list[Event], now_pc: float) -> None:
        if job.status != "running":
            return
        op = job.op
        now = self.clock.now()
        if op == "step":
            if rank != job.leader:
                return
            job.status = "done"
            v = self._videos.get(job.rid)
            if v is None:
                return
            v.steps_done = job.step + 1
            if job.ckpt_now:
                v.ckpt_step = job.step + 1
            v.step_reply_at = now_pc
            _capped(self.step_durations, (job.rid, len(job.gpus), job.setup, payload.get("duration", 0.0)))
            events.append(StepDone(now, job.rid, job.step, job.gpus, payload.get("duration", 0.0)))
        elif op == "batch":
            job.status = "done"
            for rid, path in zip(job.rids, payload.get("paths", [])):
                self.outputs[rid] = path
            _capped(self.op_durations.setdefault(op, []), (job.rids, payload.get("duration", 0.0)))
            events.append(BatchDone(now, job.rids, job.leader, payload.get("duration", 0.0)))
        elif op == "decode":
            job.status = "done"
            self.outputs[job.rid] = payload["path"]
            _capped(self.op_durations.setdefault(op, []), ((job.rid,), payload.get("duration", 0.0)))
            self._forget(job.rid)
            events.append(VideoDone(now, job.rid, job.leader))
        elif op == "reinit":
            h = self._handles[rank]
            h.joined_gen = max(h.joined_gen, int(payload.get("gen", job.step)))
            job.status = "done"
        elif op == "pause":
            v = self._videos.get(job.rid)
            if v is not None and job.ckpt_now:
                v.ckpt_step = v.steps_done

    def _on_err(self, job: _Job, rank: int, reason: str, comm: bool, events: list[Event]) -> None:
        if job.status != "running":
            return
        if comm:
            # A collective broke: a peer died (its death is handled when its sentinel fires) or stalled.
            if job.comm_failed_at is None:
                job.comm_failed_at = time.perf_counter()
                job.error = reason
            return
        job.status = "failed"
        job.error = reason
        now = self.clock.now()
        self.log.append((now, f"{job.op}-failed", f"rank {rank}: {reason}"))
        if job.op == "batch":
            events.append(Failed(now, job.rids, (job.leader,), f"image batch failed on worker {rank}: {reason}",
                                 False))
        elif job.op in ("step", "decode", "pause"):
            gpus = job.gpus or (job.leader,)
            events.append(Failed(now, (job.rid,), gpus, f"video {job.op} failed on worker {rank}: {reason}", False))
            self._forget(job.rid)
            if job.op == "step" and len(job.ranks) > 1:
                # the other ranks were (or will be) in a collective with the raising rank, which exits to free
                # them; tell them to drop their copies (they do it themselves on the collective's error)
                pass

    # ---- faults ----------------------------------------------------------------------------------------------------
    def _on_death(self, h: _Handle, events: list[Event]) -> None:
        if not h.alive:
            return
        now = self.clock.now()
        code = getattr(h.proc, "exitcode", None)
        h.ready = False
        h.close_pipes()
        self._death_at = time.perf_counter()
        self.log.append((now, "worker-died", f"rank {h.rank} (pid {h.pid}, exit code {code})"))
        # 1. the world: a new rendezvous for everyone, unless the dead rank never joined the current one
        if not self._started:
            h.given_up = True  # a worker that cannot even start is not restarted
            self.log.append((now, "worker-start-failed", f"rank {h.rank}: {h.info.get('error', code)}"))
            self._ready_cv.notify_all()
            return
        if h.joined_gen == self._gen:  # it was part of the current world: everyone needs a new one
            self._gen += 1
            self._port = self._new_port()
            for other in self._handles:
                if other.alive:
                    self._send_job("reinit", (other.rank,), other.rank, step=self._gen,
                                   extra={"port": self._port, "gen": self._gen})
        # 2. work that involved the dead rank
        affected = [j for j in list(self._jobs.values()) if h.rank in j.ranks and j.status == "running"]
        h.outstanding.clear()
        for v in self._videos.values():
            v.holders.discard(h.rank)
        h.restarts += 1
        give_up = h.restarts > self.max_restarts
        if give_up:
            h.given_up = True
            self.log.append((now, "worker-given-up", f"rank {h.rank} after {h.restarts} deaths"))
        else:
            self.restarts += 1
            self._spawn(h)
            self.log.append((now, "worker-restarted", f"rank {h.rank} (new pid {h.pid})"))
        for job in list(self._jobs.values()):  # the dead rank will never answer
            if h.rank in job.pending:
                job.pending.discard(h.rank)
                if not job.pending and job not in affected:
                    self._jobs.pop(job.seq, None)
        for job in affected:
            job.status = "superseded"
            if not job.pending:
                self._jobs.pop(job.seq, None)
            self._recover(job, h.rank, give_up, events)

    def _recover(self, job: _Job, dead: int, give_up: bool, events: list[Event]) -> None:
        now = self.clock.now()
        why = f"worker {dead} died"
        if job.op == "batch":
            events.append(Failed(now, job.rids, (job.leader,), f"{why} during an image batch; queued again", True))
            return
        if job.op not in ("step", "decode"):
            return
        v = self._videos.get(job.rid)
        if v is None:
            return
        for r in job.ranks:  # every copy touched by the broken command is suspect
            v.holders.discard(r)
        if give_up:
            events.append(Failed(now, (job.rid,), job.gpus or (job.leader,),
                                 f"{why} {self._handles[dead].restarts} times and was given up", False))
            self._forget(job.rid)
            return
        has_ckpt = Path(v.ckpt).exists() and v.ckpt_step >= 0
        if job.op == "decode":
            if has_ckpt:
                self.recovered_steps += 1
                self._send_decode(v, job.leader)
                self.log.append((now, "recovered", f"{job.rid}: decode again on {job.leader} from its checkpoint"))
            else:
                events.append(Failed(now, (job.rid,), (job.leader,), f"{why} during the decode of {job.rid} and no "
                                     f"checkpoint exists; it starts again", True))
                self._forget(job.rid)
            return
        if has_ckpt and v.ckpt_step in (job.step, job.step + 1):
            src = "file"
        elif job.src == "fresh":
            src = "fresh"
        else:
            events.append(Failed(now, (job.rid,), job.gpus, f"{why} during step {job.step} of {job.rid} and no "
                                 f"checkpoint of that step exists; it starts again", True))
            self._forget(job.rid)
            return
        self.recovered_steps += 1
        self._send_step(v, job.step, job.gpus, src, "recover")
        self.log.append((now, "recovered", f"{job.rid}: step {job.step} again on {job.gpus} from {src}"))

    def _watchdog(self, events: list[Event]) -> None:
        now_pc = time.perf_counter()
        for h in self._handles:
            if not h.alive or not h.outstanding:
                continue
            head = next(iter(h.outstanding.values()))
            busy_for = now_pc - max(head.sent_at, h.last_reply)  # how long it has been running its oldest command
            if self.command_timeout_s is not None and h.ready and busy_for > self.command_timeout_s:
                self.log.append((self.clock.now(), "worker-hung", f"rank {h.rank}: {head.op} running for "
                                 f"{busy_for:.0f}s (limit {self.command_timeout_s:.0f}s); killing it"))
                self._kill(h)
                continue
            if head.status == "superseded" and now_pc - max(self._death_at, h.last_reply) > self.stuck_grace_s:
                self.log.append((self.clock.now(), "worker-stuck", f"rank {h.rank} blocked on a broken collective;"
                                 " killing it"))
                self._kill(h)
        for job in list(self._jobs.values()):
            if job.status == "running" and job.comm_failed_at is not None and \
                    now_pc - job.comm_failed_at > self.comm_fail_grace_s:
                job.status = "failed"
                now = self.clock.now()
                reason = f"a collective of {job.op} {job.rid or job.rids} broke with no dead worker: {job.error}"
                self.log.append((now, "comm-failed", reason))
                gpus = job.gpus or (job.leader,)
                if job.op == "batch":
                    events.append(Failed(now, job.rids, gpus, reason, True))
                elif job.rid is not None and job.op in ("step", "decode"):
                    events.append(Failed(now, (job.rid,), gpus, reason, True))
                    self._forget(job.rid)


METRIC_CAP = 50_000


def _capped(values: list, x) -> None:
    """Append, keeping the newest METRIC_CAP entries (a long-running server must not grow without bound)."""
    values.append(x)
    if len(values) > 2 * METRIC_CAP:
        del values[:METRIC_CAP]


def _stop_forkserver() -> None:
    try:
        from multiprocessing import forkserver

        forkserver._forkserver._stop()  # noqa: SLF001 - the only way to end the helper process early
    except Exception:  # noqa: BLE001
        pass


_HOOKS = False


def _close_all() -> None:
    for ex in list(_LIVE):
        try:
            ex.close()
        except Exception:  # noqa: BLE001
            pass


def _install_exit_hooks() -> None:
    """atexit always; SIGTERM only when nobody else handles it (then close the workers and die as asked)."""
    global _HOOKS
    if _HOOKS:
        return
    _HOOKS = True
    atexit.register(_close_all)
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            def _on_term(signum, frame):
                _close_all()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

            signal.signal(signal.SIGTERM, _on_term)
    except (ValueError, OSError):
        pass
