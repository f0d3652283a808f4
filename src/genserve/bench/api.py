"""`genserve bench api`: the HTTP server's own cost, with the simulated executor underneath.

Measured side by side in one run, on a live uvicorn on 127.0.0.1:
* direct admission: `engine.submit` called in-process (no HTTP): the engine's own admission cost;
* server overhead per request: from the moment the request reaches the app (outermost ASGI middleware) to the
  engine's admission (`POST /v1/videos`: parse multipart/JSON, validate, SQLite insert, submit), as recorded
  by the server itself, at concurrency 1 and under load; plus the client's round trip at concurrency 1;
* sustained admissions/s: N video creations from C concurrent keep-alive connections;
* image end to end: `POST /v1/images/generations` (32x32, 1 step) round trip minus the simulated generation time.
The load generator runs in a separate process (asyncio, raw HTTP/1.1 keep-alive, JSON bodies) so that it does
not share the server's GIL; on a 2-core machine it still shares the CPUs, as a real client on the host would.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _load(port: int, path: str, bodies: list[bytes], concurrency: int, key: str) -> dict:
    """Send every body as a POST from `concurrency` keep-alive connections; per-request latencies and codes."""
    queue: asyncio.Queue = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    lat: list[float] = []
    codes: dict[int, int] = {}

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {key}\r\n").encode()
        try:
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                status_line = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    k, _, v = line.decode().partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v)
                await reader.readexactly(length)
                lat.append(time.perf_counter() - t0)
                code = int(status_line.split()[1])
                codes[code] = codes.get(code, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"elapsed": time.perf_counter() - t0, "lat": lat, "codes": codes}


def _client_main(port: int, path: str, bodies: list[bytes], concurrency: int, key: str, out) -> None:
    out.put(asyncio.run(_load(port, path, bodies, concurrency, key)))


def _run_client(port: int, path: str, bodies: list[bytes], concurrency: int, key: str) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_client_main, args=(port, path, bodies, concurrency, key, q), daemon=True)
    p.start()
    try:
        res = q.get(timeout=600)
    finally:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    return res


def _video_bodies(n: int, tag: str) -> list[bytes]:
    return [json.dumps({"prompt": f"{tag} {i}", "size": "32x32", "num_frames": 9, "num_inference_steps": 1,
                        "seed": i}).encode() for i in range(n)]


def cmd(
    requests: int = typer.Option(2000, help="Video creations in the sustained-throughput phase."),
    concurrency: int = typer.Option(16, help="Concurrent keep-alive connections in that phase."),
    sequential: int = typer.Option(300, help="Requests at concurrency 1 (latency phase)."),
    gpus: int = typer.Option(8, help="Simulated GPUs (enough that admitted videos do not pile up)."),
    policy: str = typer.Option("genserve", help="Scheduling policy in the engine."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the figures as JSON."),
) -> None:
    """Server overhead per request (HTTP in -> scheduler admission) and sustained admissions/s, sim engine."""
    import os

    from genserve.core.request import Modality, Request
    from genserve.engine.runtime import make_engine
    from genserve.profiles import Profile
    from genserve.server.app import create_app
    from genserve.server.runner import ServerThread
    from genserve.server.settings import ServerSettings

    if min(requests, concurrency, sequential, gpus) <= 0:
        typer.echo("error: every count must be positive", err=True)
        raise typer.Exit(2)
    prof = Profile.load("tiny-cpu")
    key = "bench-key"
    results: dict = {"cpus": os.cpu_count(), "gpus": gpus, "policy": policy}
    with tempfile.TemporaryDirectory(prefix="genserve-bench-api-") as tmp:
        # 1. direct admission, no HTTP
        eng = make_engine("sim", profile=prof, policy=policy, gpus=gpus)
        eng.start()
        n_direct = max(500, sequential)
        reqs = []
        for i in range(n_direct):
            now = eng.now
            reqs.append(Request(f"d{i}", Modality.VIDEO, "tiny-wan", "direct", 32, 32, 1, i, now, now + 1.0, frames=9))
        t0 = time.perf_counter()
        for r in reqs:
            eng.submit(r)
        direct = (time.perf_counter() - t0) / n_direct
        eng.close()
        results["direct_submit_us"] = direct * 1e6

        # 2. the live server
        settings = ServerSettings(data_dir=Path(tmp), profile=prof, api_key=key, engine_kind="sim",
                                  max_active=1_000_000)
        eng = make_engine("sim", profile=prof, policy=policy, gpus=gpus)
        srv = ServerThread(create_app(eng, settings)).start(timeout=60)
        server = srv.app.state.server
        try:
            _run_client(srv.port, "/v1/videos", _video_bodies(200, "warm-up"), 4, key)
            server.admission_samples.clear()
            eng.handoff_s.clear()
            seq = _run_client(srv.port, "/v1/videos", _video_bodies(sequential, "seq"), 1, key)
            srv_seq = list(server.admission_samples)
            hand_seq = list(eng.handoff_s)
            server.admission_samples.clear()
            eng.handoff_s.clear()
            cpu0 = time.process_time()  # every thread of this process: server, engine, notifier (not the client)
            load = _run_client(srv.port, "/v1/videos", _video_bodies(requests, "load"), concurrency, key)
            cpu_load = time.process_time() - cpu0
            srv_load = list(server.admission_samples)
            hand_load = list(eng.handoff_s)
            img_bodies = [json.dumps({"prompt": f"img {i}", "size": "32x32", "num_inference_steps": 1,
                                      "seed": i, "deadline_s": 60}).encode() for i in range(100)]
            img = _run_client(srv.port, "/v1/images/generations", img_bodies, 1, key)
            gen = prof.image_latency("tiny-sd3", 32, 32, 1, 1)
            rounds = eng.ctl.rounds
        finally:
            srv.stop()
    ok_seq = seq["codes"].get(200, 0)
    ok_load = load["codes"].get(200, 0)
    results.update({
        "sequential": {"n": sequential, "ok": ok_seq, "client_rtt_ms_p50": 1e3 * _pct(seq["lat"], 0.5),
                       "client_rtt_ms_p99": 1e3 * _pct(seq["lat"], 0.99),
                       "server_overhead_ms_p50": 1e3 * _pct(srv_seq, 0.5),
                       "server_overhead_ms_p99": 1e3 * _pct(srv_seq, 0.99),
                       "handoff_ms_p50": 1e3 * _pct(hand_seq, 0.5), "handoff_ms_p99": 1e3 * _pct(hand_seq, 0.99)},
        "load": {"n": requests, "concurrency": concurrency, "ok": ok_load, "codes": load["codes"],
                 "admissions_per_s": ok_load / load["elapsed"],
                 "client_rtt_ms_p50": 1e3 * _pct(load["lat"], 0.5), "client_rtt_ms_p99": 1e3 * _pct(load["lat"], 0.99),
                 "server_overhead_ms_p50": 1e3 * _pct(srv_load, 0.5),
                 "server_overhead_ms_p99": 1e3 * _pct(srv_load, 0.99),
                 "server_cpu_ms_per_request": 1e3 * cpu_load / max(1, ok_load),
                 "handoff_ms_p50": 1e3 * _pct(hand_load, 0.5), "handoff_ms_p99": 1e3 * _pct(hand_load, 0.99)},
        "image": {"n": len(img["lat"]), "ok": img["codes"].get(200, 0),
                  "rtt_ms_p50": 1e3 * _pct(img["lat"], 0.5), "simulated_generation_ms": 1e3 * gen,
                  "overhead_ms_p50": 1e3 * (_pct(img["lat"], 0.5) - gen)},
        "engine_rounds": rounds,
    })
    s, ld, im = results["sequential"], results["load"], results["image"]
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results["load_average_1m"] = load_avg
    typer.echo(f"genserve bench api  (sim engine, {gpus} simulated GPUs, policy {policy}, {os.cpu_count()} CPUs, "
               f"load average {load_avg:.1f})")
    typer.echo(f"  engine.submit, in-process, no HTTP        {results['direct_submit_us']:8.1f} us/request")
    typer.echo(f"  server overhead, app in -> admitted, c=1  p50 {s['server_overhead_ms_p50']:6.3f} ms   "
               f"p99 {s['server_overhead_ms_p99']:6.3f} ms")
    typer.echo(f"  then queue hand-off to the controller, c=1 p50 {s['handoff_ms_p50']:6.3f} ms   "
               f"p99 {s['handoff_ms_p99']:6.3f} ms   (under load: p50 {ld['handoff_ms_p50']:.3f} ms, "
               f"p99 {ld['handoff_ms_p99']:.3f} ms)")
    typer.echo(f"  client round trip POST /v1/videos, c=1    p50 {s['client_rtt_ms_p50']:6.3f} ms   "
               f"p99 {s['client_rtt_ms_p99']:6.3f} ms")
    typer.echo(f"  sustained admissions, c={concurrency:<3d}             {ld['admissions_per_s']:8.0f} /s   "
               f"({ld['ok']}/{requests} ok; server overhead p50 {ld['server_overhead_ms_p50']:.3f} ms, "
               f"p99 {ld['server_overhead_ms_p99']:.3f} ms; client p50 {ld['client_rtt_ms_p50']:.2f} ms)")
    typer.echo(f"  server+engine CPU per admitted video      {ld['server_cpu_ms_per_request']:8.3f} ms   "
               f"(HTTP, store, and the engine's rounds for it; one core: "
               f"{1e3 / max(1e-9, ld['server_cpu_ms_per_request']):.0f}/s)")
    typer.echo(f"  image 32x32, 1 step, end to end, c=1      p50 {im['rtt_ms_p50']:6.3f} ms   "
               f"(simulated generation {im['simulated_generation_ms']:.3f} ms -> overhead "
               f"{im['overhead_ms_p50']:.3f} ms)")
    typer.echo(f"  ratio: HTTP admission / direct submit      {1e3 * s['server_overhead_ms_p50'] / max(1e-9, results['direct_submit_us']):8.1f}x")
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=1))
    if ok_seq != sequential or ok_load != requests:
        typer.echo(f"error: some requests failed: {seq['codes']} {load['codes']}", err=True)
        raise typer.Exit(1)


__all__ = ["cmd"]
