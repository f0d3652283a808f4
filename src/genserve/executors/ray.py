"""The Ray executor: the local executor's workers as Ray actors, placed by Ray on (logical) GPUs across nodes.

Everything above the transport is `LocalExecutor`'s: the command protocol, state hand-over through the
torch.distributed world, checkpoints, crash recovery (a dead actor is replaced and the world re-formed), the
metrics. Only four things differ:

* a worker is a Ray actor (`num_gpus` per worker: real GPUs, or logical ones for tests) hosting the same
  `genserve.workers.worker.Worker`; its command loop runs in a thread of the actor;
* commands go through `actor.submit.remote(msg)` (ordered: one caller, a mailbox queue inside the actor), replies
  come back through a long poll `actor.poll.remote(t)` (the actor allows 2 concurrent calls, so a poll never
  blocks a submit);
* a dead actor shows up as `RayActorError` on its poll;
* the rendezvous host is rank 0's node: rank 0 (and every restart of it) is pinned to the driver's node, whose
  IP is the master address (ports are picked there).

Checkpoints go to a spool folder that must be visible to every node for cross-node crash recovery (default: a
local temporary folder, enough on one node).
"""

from __future__ import annotations

import os
import queue
import threading
import time

from genserve.executors.local import LocalExecutor, _Handle

__all__ = ["RayExecutor"]


class _QueueConn:
    """What Worker.res needs (send) over a thread queue."""

    def __init__(self, q: "queue.Queue") -> None:
        self.q = q

    def send(self, msg) -> None:
        self.q.put(msg)

    def close(self) -> None:
        pass


class _WorkerActorImpl:
    """Body of the Ray actor (wrapped by ray.remote lazily, so importing this module does not need ray)."""

    def __init__(self, rank: int, cfg, port: int) -> None:
        for k, v in (("OMP_NUM_THREADS", cfg.threads), ("MKL_NUM_THREADS", cfg.threads),
                     ("TOKENIZERS_PARALLELISM", "false")):
            os.environ.setdefault(k, str(v))
        self.rank = rank
        self.commands: queue.Queue = queue.Queue()
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._main, args=(rank, cfg, port), daemon=True, name="genserve-worker").start()

    def _main(self, rank: int, cfg, port: int) -> None:
        import traceback

        from genserve.workers.worker import Worker

        worker = Worker(rank, cfg, port, _QueueConn(self.replies))
        try:
            info = worker.start()
        except BaseException as e:  # noqa: BLE001
            self.replies.put(("fatal", rank, f"{type(e).__name__}: {e}", traceback.format_exc(limit=8)))
            time.sleep(0.5)
            os._exit(4)
        self.replies.put(("ready", rank, os.getpid(), info))
        try:
            worker.run(self.commands)
        finally:
            try:
                from genserve.parallel.groups import destroy_world

                destroy_world()
            except Exception:  # noqa: BLE001
                pass
            self.replies.put(("stopped", rank))

    def submit(self, msg: dict) -> None:
        if msg.get("op") == "stop":
            while True:
                try:
                    self.commands.get_nowait()
                except queue.Empty:
                    break
        self.commands.put(msg)

    def poll(self, timeout: float = 0.2) -> list:
        out = []
        try:
            out.append(self.replies.get(timeout=timeout))
        except queue.Empty:
            return out
        while True:
            try:
                out.append(self.replies.get_nowait())
            except queue.Empty:
                return out

    def node_ip(self) -> str:
        import ray

        return ray.util.get_node_ip_address()


_ACTOR = None


def _actor_class():
    global _ACTOR
    if _ACTOR is None:
        import ray

        _ACTOR = ray.remote(max_concurrency=2)(_WorkerActorImpl)
    return _ACTOR


class _RayCmd:
    def __init__(self, actor) -> None:
        self.actor = actor

    def send(self, msg: dict) -> None:
        self.actor.submit.remote(msg)

    def close(self) -> None:
        pass


class RayExecutor(LocalExecutor):
    """LocalExecutor's protocol over Ray actors. `gpus_per_worker`: the `num_gpus` each actor asks Ray for (1: one
    GPU per worker; logical GPUs work too, e.g. `ray.init(num_gpus=4)` on a CPU machine). `address`: an existing
    Ray cluster ("auto"), else a local Ray is started (and shut down by close)."""

    def __init__(self, num_workers: int, *, address: str | None = None, gpus_per_worker: float = 1.0,
                 cpus_per_worker: float = 0.0, ray_init: dict | None = None, **kw) -> None:
        kw["start_method"] = "ray"
        super().__init__(num_workers, **kw)
        self.address = address
        self.gpus_per_worker = gpus_per_worker
        self.cpus_per_worker = cpus_per_worker
        self.ray_init = dict(ray_init or {})
        self._own_ray = False
        self._polls: dict = {}  # ObjectRef -> (handle, actor)
        self._driver_node = None

    # ---- transport hooks -------------------------------------------------------------------------------------------
    def _open(self) -> None:
        import dataclasses

        import ray

        if not ray.is_initialized():
            kw = {"include_dashboard": False, "log_to_driver": False, **self.ray_init}
            if self.address:
                kw["address"] = self.address
            ray.init(**kw)
            self._own_ray = True
        self._driver_node = ray.get_runtime_context().get_node_id()
        self.cfg = dataclasses.replace(self.cfg, master_addr=ray.util.get_node_ip_address(), one_visible_device=True)

    def _spawn(self, h: _Handle) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        opts = {"num_gpus": self.gpus_per_worker, "num_cpus": self.cpus_per_worker,
                "name": None, "max_restarts": 0}
        if h.rank == 0:  # the rendezvous store lives on rank 0: keep it on the master's (the driver's) node
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(self._driver_node, soft=False)
        actor = _actor_class().options(**opts).remote(h.rank, self.cfg, self._port)
        h.proc, h.cmd, h.res, h.pid = actor, _RayCmd(actor), None, None
        h.alive, h.ready = True, False
        h.spawn_gen = self._gen
        h.last_reply = time.perf_counter()
        self._polls[actor.poll.remote(0.2)] = (h, actor)

    def _kill(self, h: _Handle) -> None:
        import ray

        try:
            ray.kill(h.proc, no_restart=True)
        except Exception:  # noqa: BLE001
            pass

    def _stop_workers(self) -> None:
        import ray

        deadline = time.monotonic() + 5.0
        pending = {h.rank for h in self._handles if h.proc is not None and h.ready}
        while pending and time.monotonic() < deadline:  # wait for each loop to finish its command and stop
            refs = {ref: hv for ref, hv in list(self._polls.items()) if hv[0].rank in pending}
            if not refs:
                break
            done, _ = ray.wait(list(refs), num_returns=1, timeout=0.2)
            for ref in done:
                h, actor = refs[ref]
                self._polls.pop(ref, None)
                try:
                    msgs = ray.get(ref)
                except Exception:  # noqa: BLE001 - already dead
                    pending.discard(h.rank)
                    continue
                if any(m[0] == "stopped" for m in msgs):
                    pending.discard(h.rank)
                else:
                    self._polls[actor.poll.remote(0.2)] = (h, actor)
        for h in self._handles:
            if h.proc is not None:
                self._kill(h)
        self._polls.clear()

    def _after_close(self) -> None:
        if self._own_ray:
            import ray

            ray.shutdown()

    def worker_alive(self, rank: int) -> bool:
        """Whether the actor of `rank` answers (for tests)."""
        import ray

        h = self._handles[rank]
        try:
            ray.get(h.proc.node_ip.remote(), timeout=10)
            return True
        except Exception:  # noqa: BLE001
            return False

    # ---- listening -------------------------------------------------------------------------------------------------
    def _listen_once(self) -> None:
        import ray

        with self._lock:
            if self._closed or self._closing:
                time.sleep(0.05)
                return
            refs = dict(self._polls)
        if not refs:
            time.sleep(0.05)
            return
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0.1)
        events: list = []
        with self._lock:
            if self._closed or self._closing:
                return
            dead = []
            for ref in done:
                h, actor = refs[ref]
                self._polls.pop(ref, None)
                if h.proc is not actor or not h.alive:
                    continue  # an actor already replaced
                try:
                    msgs = ray.get(ref)
                except Exception:  # noqa: BLE001 - RayActorError / ActorDiedError: the worker is gone
                    dead.append(h)
                    continue
                for msg in msgs:
                    if msg[0] != "stopped":
                        self._on_reply(h, msg, events)
                self._polls[actor.poll.remote(0.2)] = (h, actor)
            for h in dead:
                self._on_death(h, events)
            self._watchdog(events)
        self._flush(events)
