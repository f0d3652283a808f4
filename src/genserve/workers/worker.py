"""One worker process: a device (cuda:i or a CPU slot), both models loaded once, commands run in order.

See `genserve.workers.protocol` for the commands. The process:
1. ignores SIGINT (the parent stops it), limits its threads, imports torch,
2. joins the torch.distributed world (gloo on CPU, NCCL on CUDA) and builds D's `GroupRegistry` (every aligned SP
   group, created once),
3. loads the image and the video adapter (replicated co-serving: every worker holds both),
4. says ("ready", rank, pid, info), then runs commands until "stop" or until its command pipe closes (the parent
   died: a worker never outlives its executor).
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from genserve.workers.protocol import COMM_ERROR_MARKERS, WorkerConfig


def _is_comm_error(exc: BaseException) -> bool:
    name = type(exc).__name__
    if name in ("DistBackendError", "DistNetworkError", "DistStoreError"):
        return True
    text = str(exc)
    return any(m in text for m in COMM_ERROR_MARKERS)


class Worker:
    def __init__(self, rank: int, cfg: WorkerConfig, port: int, res_conn) -> None:
        self.rank = rank
        self.cfg = cfg
        self.port = port
        self.res = res_conn
        self.states: dict[str, Any] = {}  # video request id -> models.State (a full copy on every rank of its group)
        self.faults: dict[str, str] = {}
        self.registry = None

    # ---- start-up ----------------------------------------------------------------------------------------------
    def start(self) -> dict:
        import torch

        cfg = self.cfg
        torch.set_num_threads(max(1, cfg.threads))
        self.torch = torch
        self.device = torch.device(cfg.device_of(self.rank))
        t0 = time.perf_counter()
        self._join(self.port)
        t1 = time.perf_counter()
        from genserve.models import load_adapter

        dtype = getattr(torch, cfg.dtype) if cfg.dtype else None
        self.image = load_adapter(cfg.image_model, self.device, dtype)
        self.video = load_adapter(cfg.video_model, self.device, dtype)
        t2 = time.perf_counter()
        return {"device": str(self.device), "world_s": t1 - t0, "load_s": t2 - t1, "threads": torch.get_num_threads()}

    def _join(self, port: int) -> None:
        from genserve.core.snapshot import ClusterSpec
        from genserve.parallel.groups import GroupRegistry, init_world

        cfg = self.cfg
        backend = cfg.backend_name()
        init_world(self.rank, cfg.world_size, init_method=f"tcp://{cfg.master_addr}:{port}", backend=backend,
                   timeout_s=cfg.dist_timeout_s, device=self.device if backend == "nccl" else None)
        cluster = ClusterSpec(cfg.world_size, cfg.gpus_per_node, cfg.sp_degrees)
        self.registry = GroupRegistry(cluster, backend=backend)
        self.port = port

    # ---- helpers -------------------------------------------------------------------------------------------------
    def _sync(self) -> None:
        """Wait for the device (CUDA kernels run asynchronously): durations and "done" events must be real."""
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def _state_from_file(self, path: str):
        from genserve.models import State

        return State.from_bytes(Path(path).read_bytes(), self.device)

    def _checkpoint(self, state, path: str) -> None:
        p = Path(path)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_bytes(state.to_bytes())
        os.replace(tmp, p)

    def _move(self, state, holder: int, gpus: tuple[int, ...]):
        """Give the state held on `holder` to every rank of `gpus` (D's move_bytes); returns this rank's copy."""
        from genserve.models import State
        from genserve.parallel.state import move_bytes

        me = self.rank
        if len(gpus) == 1 and holder == gpus[0]:
            return state
        dev = self.device if self.cfg.backend_name() == "nccl" else "cpu"
        got = move_bytes(state.to_bytes() if me == holder else None, holder, gpus, self.registry, device=dev)
        if me == holder:
            return state
        return State.from_bytes(got, self.device)

    # ---- ops -----------------------------------------------------------------------------------------------------
    def op_batch(self, c: dict) -> dict:
        from genserve.models import save_png

        t0 = time.perf_counter()
        img = self.image
        states = [img.prepare(spec) for spec in c["specs"]]
        while True:
            active = [s for s in states if not s.done]
            if not active:
                break
            img.step_batch(active)
        images = img.decode_batch(states)
        self._sync()
        for image, path in zip(images, c["paths"]):
            save_png(image, path)
            if self.cfg.save_raw:
                self.torch.save(image.detach().cpu().clone(), path + ".pt")
        return {"duration": time.perf_counter() - t0, "paths": list(c["paths"])}

    def op_step(self, c: dict) -> dict:
        rid, k, gpus, src = c["rid"], c["step"], tuple(c["gpus"]), c["src"]
        me = self.rank
        leader = gpus[0]
        t0 = time.perf_counter()
        fault = self.faults.pop(rid, None)
        if fault == "exit":
            os._exit(17)
        state = None
        if src is None:
            state = self.states.get(rid)
            if state is None:
                raise RuntimeError(f"rank {me} holds no state for {rid} (continue without a source)")
        else:
            if src == "fresh":
                holder = leader
                if me == leader:
                    state = self.video.prepare(c["spec"])
            elif src == "file":
                holder = leader
                if me == leader:
                    state = self._state_from_file(c["ckpt"])
            else:
                holder = int(src)
                if me == holder:
                    state = self.states.get(rid)
                    if state is None:
                        if c.get("ckpt") and Path(c["ckpt"]).exists():
                            state = self._state_from_file(c["ckpt"])  # lost with a restarted process
                        else:
                            raise RuntimeError(f"rank {me} holds no state for {rid} to hand over")
            self.states.pop(rid, None)
            state = self._move(state, holder, gpus)
            if me not in gpus:  # a former holder outside the new group: the state has moved on
                return {"moved": True}
        if fault == "raise":
            raise RuntimeError(f"injected fault in step {k} of {rid} on rank {me}")
        if state.step == k:
            if len(gpus) > 1:
                self._sp_step(state, gpus)
            else:
                self.video.step(state)
        elif state.step != k + 1:  # k + 1: recovered from a checkpoint written after the step (nothing to redo)
            raise RuntimeError(f"{rid}: state is at step {state.step}, asked to run step {k}")
        self.states[rid] = state
        self._sync()
        if me != leader:
            return {}
        if c.get("ckpt_now"):
            self._checkpoint(state, c["ckpt"])
        return {"step": k, "duration": time.perf_counter() - t0}

    def _sp_step(self, state, gpus: tuple[int, ...]) -> None:
        """WanAdapter.step with every transformer call run by D's sp_forward over the pre-created group."""
        from genserve.parallel.wan import sp_group

        pipe = self.video.pipe
        models = [getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)]
        with sp_group(models, self.registry.group(gpus), mode=self.cfg.sp_mode):
            self.video.step(state)

    def op_pause(self, c: dict) -> dict:
        state = self.states.get(c["rid"])
        if state is None:
            if c.get("ckpt") and Path(c["ckpt"]).exists():
                return {}
            raise RuntimeError(f"rank {self.rank} holds no state for {c['rid']} to keep")
        if c.get("ckpt_now"):
            self._checkpoint(state, c["ckpt"])
        return {}

    def op_decode(self, c: dict) -> dict:
        from genserve.models import save_mp4

        t0 = time.perf_counter()
        rid = c["rid"]
        state = self.states.pop(rid, None)
        if state is None:
            state = self._state_from_file(c["ckpt"])
        if not state.done:
            raise RuntimeError(f"{rid}: decode asked at step {state.step} of {state.num_steps}")
        frames = self.video.decode(state)
        self._sync()
        save_mp4(frames, c["path"], fps=self.cfg.fps)
        if self.cfg.save_raw:
            self.torch.save(frames.detach().cpu().clone(), c["path"] + ".pt")
        return {"duration": time.perf_counter() - t0, "path": c["path"]}

    def op_drop(self, c: dict) -> dict:
        self.states.pop(c["rid"], None)
        return {}

    def op_reinit(self, c: dict) -> dict:
        from genserve.parallel.groups import destroy_world

        t0 = time.perf_counter()
        try:
            destroy_world()
        except Exception:  # noqa: BLE001 - a broken world may fail to tear down cleanly; we leave it anyway
            pass
        self._join(int(c["port"]))
        return {"duration": time.perf_counter() - t0}

    def op_fault(self, c: dict) -> dict:
        self.faults[c["rid"]] = c["kind"]
        return {}

    # ---- loop ----------------------------------------------------------------------------------------------------
    def run(self, commands: "queue.Queue[dict]") -> None:
        handlers = {"batch": self.op_batch, "step": self.op_step, "pause": self.op_pause, "decode": self.op_decode,
                    "drop": self.op_drop, "reinit": self.op_reinit, "fault": self.op_fault}
        while True:
            c = commands.get()
            op = c.get("op")
            if op == "stop":
                return
            seq = c.get("seq")
            try:
                payload = handlers[op](c)
            except BaseException as e:  # noqa: BLE001 - every failure is reported, none kills the loop silently
                comm = _is_comm_error(e)
                reason = f"{type(e).__name__}: {e}".strip()
                if len(reason) > 600:
                    reason = reason[:600] + "..."
                if op == "step":
                    self.states.pop(c.get("rid"), None)  # possibly half-updated; recovery reloads a checkpoint
                self.res.send(("err", seq, reason, comm, traceback.format_exc(limit=6)))
                if op == "step" and len(c.get("gpus", ())) > 1 and not comm:
                    # The other ranks of the group are inside a collective with us: leaving the world is the only
                    # way to release them (they see the connection close at once). The executor restarts us.
                    os._exit(3)
                continue
            self.res.send(("ok", seq, payload))


def _reader(conn, commands: "queue.Queue[dict]") -> None:
    """Move commands from the pipe to the local queue. "stop", or EOF (the executor is gone), drops every command
    not started yet and stops after the one running now."""
    while True:
        try:
            c = conn.recv()
        except (EOFError, OSError):
            c = {"op": "stop", "orphan": True}
        if c.get("op") == "stop":
            while True:
                try:
                    commands.get_nowait()
                except queue.Empty:
                    break
            commands.put(c)
            return
        commands.put(c)


def worker_main(rank: int, cfg: WorkerConfig, port: int, cmd_conn, res_conn) -> None:
    """Process entry point (module level, so spawn/forkserver can import it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OMP_NUM_THREADS", str(cfg.threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(cfg.threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for k, v in cfg.env.items():
        os.environ[k] = str(v)
    commands: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(cmd_conn, commands), daemon=True, name="genserve-cmd").start()
    worker = Worker(rank, cfg, port, res_conn)
    try:
        info = worker.start()
    except BaseException as e:  # noqa: BLE001
        try:
            res_conn.send(("fatal", rank, f"{type(e).__name__}: {e}", traceback.format_exc(limit=8)))
        finally:
            os._exit(4)
    res_conn.send(("ready", rank, os.getpid(), info))
    try:
        worker.run(commands)
    finally:
        try:
            from genserve.parallel.groups import destroy_world

            destroy_world()
        except Exception:  # noqa: BLE001
            pass
    try:
        res_conn.close()
    except OSError:
        pass
    os._exit(0)
