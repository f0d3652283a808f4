"""The command protocol between the local executor (controller side) and its worker processes.

Transport: two one-way pipes per worker (commands in, replies out). Pipes rather than a shared multiprocessing
Queue: a worker killed in the middle of a write can corrupt nothing but its own pipe, and the executor sees the
end of that pipe (EOF) together with the process sentinel.

Commands are plain dicts with an `op` and a sequence number `seq` (unique per executor). A worker runs its
commands strictly in the order received (FIFO, like a CUDA stream) and answers every command exactly once:

    ("ok",  seq, payload: dict)          the command finished; payload depends on the op
    ("err", seq, reason: str, comm: bool) it failed; comm=True when the failure was a broken collective (a peer died)
    ("ready", rank, pid, info: dict)     once, after start-up (models loaded, world joined)

Ops (G = the SP group, a sorted tuple of ranks; G[0] is the leader):

    batch   rids, specs, paths         run same-resolution images end to end on this worker (prepare, step_batch
                                        until every image is done, decode), write PNGs atomically; ok{durations}
    step    rid, step, gpus=G, src, spec, ckpt, ckpt_now
                                        one denoising step of a video on G. Sent to every rank of G and to `src`
                                        when src is a rank outside G. `src` says where the state comes from:
                                          None      every rank of G already holds it (continue);
                                          "fresh"   the leader prepares it (text encode, seeded latents);
                                          "file"    the leader loads the checkpoint file `ckpt` (fault recovery);
                                          rank s    rank s holds it in memory (resume after a pause, SP change).
                                        The state is then moved from its holder to every rank of G (D's move_state:
                                        point to point to the new leader, broadcast in the pre-created group), every
                                        rank of G runs the step (sp_forward on the group when |G| > 1) and keeps
                                        an identical copy; the leader writes the checkpoint when `ckpt_now`.
                                        ok{step, duration, leader} from the leader; ok{} from the others
    pause   rid, ckpt, ckpt_now        the leader keeps the state in memory (and checkpoints it if asked); ok{}
    decode  rid, path, ckpt            VAE-decode (state from memory, else from the checkpoint), write the MP4
                                        atomically, drop the state; ok{path, duration}
    drop    rid                         forget the in-memory state of a video; ok{}
    reinit  port                        leave the torch.distributed world and join a new one at `port` (after a
                                        worker died and was restarted), rebuilding every SP group; ok{}
    fault   kind, rid                   test hook: kind "raise" makes the next step of `rid` raise; "exit" makes
                                        the process exit at its next step of `rid`
    stop                                leave the world and exit (no reply)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker process needs to start. Picklable (it crosses the process boundary)."""

    world_size: int
    device: str = "cpu"  # "cpu" (slots) or "cuda" (worker i uses cuda:i)
    image_model: str = "tiny-sd3"
    video_model: str = "tiny-wan"
    dtype: str | None = None  # "float32" | "bfloat16" | "float16" | None (the model's own)
    threads: int = 1  # torch intra-op threads per CPU slot
    gpus_per_node: int = 8
    sp_degrees: tuple[int, ...] = (1, 2, 4, 8)
    backend: str | None = None  # None: nccl on CUDA, gloo on CPU
    master_addr: str = "127.0.0.1"  # host of rank 0 (the rendezvous store): this host for local workers
    dist_timeout_s: float = 120.0
    sp_mode: str = "auto"  # ulysses | ring | auto
    fps: int = 8
    save_raw: bool = False  # also write each output's float tensor next to it (<path>.pt), for exact comparisons
    env: dict = field(default_factory=dict)

    one_visible_device: bool = False  # each worker sees only its own GPU (Ray sets CUDA_VISIBLE_DEVICES): cuda:0

    def device_of(self, rank: int) -> str:
        if not self.device.startswith("cuda"):
            return "cpu"
        return "cuda:0" if self.one_visible_device else f"cuda:{rank}"

    def backend_name(self) -> str:
        if self.backend:
            return self.backend
        return "nccl" if self.device.startswith("cuda") else "gloo"


OPS = ("batch", "step", "pause", "decode", "drop", "reinit", "fault", "stop")

# Markers of a collective broken by a dead peer (gloo / NCCL messages); the rank itself is healthy.
COMM_ERROR_MARKERS = (
    "Connection closed by peer", "Connection reset", "Broken pipe", "ECONNRESET", "EPIPE", "Timed out",
    "timed out", "NCCL", "DistBackendError", "DistNetworkError", "Socket", "socket",
)
