"""`genserve serve` and `genserve demo` (registered in genserve/cli.py). Heavy imports happen inside."""

from __future__ import annotations

import base64
import json
import random
import secrets
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import typer

from genserve.core.errors import GenServeError


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _local_available() -> str | None:
    """None when the local engine can be used here, else why not."""
    try:
        import importlib.util

        for mod in ("torch", "diffusers", "genserve.executors.local"):
            if importlib.util.find_spec(mod) is None:
                return f"{mod} is not installed"
    except (ImportError, ValueError) as e:
        return str(e)
    return None


def _build_engine(kind: str, profile, policy: str, workers: int, device: str, output_dir: Path, threads: int):
    devices = [device if device == "cpu" else f"cuda:{i}" for i in range(workers)]
    return _engine_on(kind, profile, policy, devices, output_dir, threads)


def _engine_on(kind: str, profile, policy: str, devices: list[str], output_dir: Path, threads: int):
    from genserve.engine.runtime import make_engine

    if kind == "sim":
        return make_engine("sim", profile=profile, policy=policy, gpus=len(devices), output_dir=output_dir,
                           placeholder_outputs=True)
    extra = {"threads": threads} if devices[0] == "cpu" else {}
    return make_engine(kind, profile=profile, policy=policy, devices=devices, output_dir=output_dir, **extra)


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on. Anything but localhost needs --api-key."),
    port: int = typer.Option(8000, help="TCP port."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="GENSERVE_API_KEY",
                                          help="Require 'Authorization: Bearer KEY' (env GENSERVE_API_KEY)."),
    keys_file: Optional[Path] = typer.Option(None, "--keys-file", envvar="GENSERVE_KEYS_FILE",
                                             help="API keys of several tenants: one 'tenant:key' a line (# "
                                                  "comments); each tenant sees only its own jobs and files."),
    engine: str = typer.Option("local", help="local (real models in worker processes) | ray (the same workers as "
                                             "Ray actors) | sim (simulated devices timed from the profile, "
                                             "placeholder outputs)."),
    devices: Optional[str] = typer.Option(None, "--devices", help="Worker devices: a list (cuda:0,cuda:1 or "
                                                                  "cpu,cpu) or a count (default 2)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="A count of devices (instead of --devices)."),
    device: Optional[str] = typer.Option(None, help="cpu (worker slots, default) | cuda (one worker per GPU): "
                                                    "the kind of a count."),
    threads: int = typer.Option(1, help="torch threads per CPU worker slot."),
    profile: str = typer.Option("tiny-cpu", help="Latency profile (bundled name or JSON path): models, sizes, "
                                                 "SLO deadlines."),
    policy: str = typer.Option("genserve", help="Scheduling policy: genserve | fcfs | sjf | srtf | rasp | "
                                                "dedicated."),
    data_dir: Path = typer.Option(Path("genserve-data"), help="Job database and outputs (kept across restarts)."),
    sigma: float = typer.Option(1.0, help="Default SLO scale: deadline = sigma x 1.5 x isolated latency."),
    max_active: int = typer.Option(512, help="Requests in flight before the API answers 429."),
    drain_timeout: float = typer.Option(30.0, "--drain-timeout", help="On SIGTERM / SIGINT: seconds that admitted "
                                        "work may run on (new requests get 503) before the server stops; a "
                                        "second signal stops at once. Unfinished videos run again at the next start."),
    public_url: Optional[str] = typer.Option(None, help="Base of image `url` answers behind a proxy "
                                                        "(default: the request's own base URL)."),
    log_level: str = typer.Option("info", help="Log level of uvicorn and genserve (info: one line per job event, "
                                               "docs/api.md 'Logs')."),
) -> None:
    """Serve the OpenAI-compatible HTTP API (images, video jobs, /metrics) over the scheduler."""
    from genserve.profiles import Profile
    from genserve.server.devices import parse_devices, pin_gpus
    from genserve.server.settings import ServerSettings, check_bind, load_keys_file

    if engine not in ("local", "ray", "sim"):
        _fail(f"--engine must be local, ray or sim, got {engine!r}")
    try:
        asked = parse_devices(devices, workers, device)
        devs = pin_gpus(asked) if engine != "sim" else asked
        api_keys = load_keys_file(keys_file) if keys_file is not None else {}
        check_bind(host, api_key, api_keys)
        prof = Profile.load(profile)
        settings = ServerSettings(data_dir=data_dir, profile=prof, api_key=api_key, api_keys=api_keys,
                                  engine_kind=engine, default_sigma=sigma, max_active=max_active,
                                  public_url=public_url, drain_timeout_s=drain_timeout)
    except GenServeError as e:
        _fail(str(e))
    if engine in ("local", "ray"):
        why = _local_available()
        if why:
            _fail(f"the local engine needs the model stack ({why}); install genserve[models] or use --engine sim")
    from genserve.server.runner import bind

    try:
        sock = bind(host, port)  # first: connections queue from here and get 503 while the engine starts
        port = sock.getsockname()[1]
    except OSError as e:
        _fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
    from genserve.server.app import create_app
    from genserve.server.lifecycle import log_to_stderr, serve_app

    try:
        eng = _engine_on(engine, prof, policy, devs, settings.outputs_dir, threads)
    except GenServeError as e:
        sock.close()
        _fail(str(e))
    n = len(devs)
    where = f"{n} simulated GPUs" if engine == "sim" else f"{n} CPU worker slots" if devs[0] == "cpu" else \
        f"GPUs {','.join(asked)}"
    typer.echo(f"genserve: http://{host}:{port}/v1  engine={engine} ({where})  policy={policy}  profile={prof.name}")
    typer.echo(f"  models: images {', '.join(prof.image_models)}; videos {', '.join(prof.video_models)}")
    tenants = len(set(settings.api_keys.values()))
    auth = f"API key required ({tenants} tenant{'s' * (tenants != 1)})" if settings.auth_required else \
        "none (localhost only)"
    typer.echo(f"  auth: {auth}  data: {data_dir.resolve()}")
    if engine != "sim":
        typer.echo("  starting the workers (loading models): /health answers 503 'starting' until they are ready")
    log_to_stderr(log_level)
    srv = serve_app(create_app(eng, settings), sock, log_level)  # returns after SIGTERM / SIGINT and the drain
    if srv.lifecycle.error:  # the engine did not start: a worker could not, say
        typer.echo(f"error: {srv.lifecycle.error}", err=True)
        raise typer.Exit(1)
    if srv.force_exit:
        raise typer.Exit(1)


# ---- demo --------------------------------------------------------------------------------------------------
@dataclass
class _Job:
    n: int
    kind: str
    at: float
    size: str
    steps: int
    prompt: str
    frames: int = 1
    id: str | None = None
    status: str = "waiting"
    progress: int = 0
    started: float | None = None
    finished: float | None = None
    deadline_s: float | None = None
    met: bool | None = None
    path: Path | None = None
    error: str | None = None
    paused_seen: bool = False
    latency_s: float | None = None  # measured by the server: request in to output ready
    extra: dict = field(default_factory=dict)


_VIDEO_PROMPTS = ["a paper boat drifting down a rainy street", "a hummingbird hovering over a red flower",
                  "time-lapse of clouds over a mountain lake", "a neon tram crossing a bridge at night"]
_IMAGE_PROMPTS = ["a lighthouse at dawn, oil painting", "a fox in fresh snow, photograph",
                  "a bowl of ramen, studio light", "an origami crane on a desk", "a city skyline in fog",
                  "a watercolor map of an island", "a robot reading a book", "sunflowers under a stormy sky",
                  "a cat asleep on a windowsill", "a glass of lemonade, macro shot"]


def _workload(images: int, videos: int, seed: int, prof) -> list[_Job]:
    """A short mixed trace: videos start early and run long; images arrive in bursts while they run, so the
    scheduler has to pause or shrink videos to keep image deadlines."""
    rng = random.Random(seed)
    d = prof.doc.defaults
    vsizes = sorted(d.video_sizes, key=lambda s: s[0] * s[1] * s[2])
    isizes = sorted(d.image_sizes, key=lambda s: s[0] * s[1])
    jobs: list[_Job] = []
    for i in range(videos):
        w, h, f = vsizes[min(len(vsizes) - 1, 1 + i % max(1, len(vsizes) - 1))] if len(vsizes) > 1 else vsizes[0]
        jobs.append(_Job(0, "video", 0.8 * i + rng.uniform(0, 0.2), f"{w}x{h}", 40 + 10 * (i % 2),
                         _VIDEO_PROMPTS[i % len(_VIDEO_PROMPTS)], frames=f))
    t = 0.4
    for i in range(images):
        w, h = isizes[rng.randrange(len(isizes))]
        jobs.append(_Job(0, "image", t, f"{w}x{h}", rng.choice((12, 16, 20)), _IMAGE_PROMPTS[i % len(_IMAGE_PROMPTS)]))
        t += rng.choice((0.1, 0.4, 0.8, 1.2))
    jobs.sort(key=lambda j: j.at)
    for n, j in enumerate(jobs, 1):
        j.n = n
    return jobs


def demo(
    engine: str = typer.Option("auto", help="auto (local if the model stack is installed, else sim) | local | "
                                            "sim."),
    out: Path = typer.Option(Path("genserve-demo"), "-o", "--out", help="Folder for the generated PNG/MP4 files."),
    images: int = typer.Option(9, help="Image requests."),
    videos: int = typer.Option(3, help="Video requests."),
    workers: int = typer.Option(2, "--workers", "--devices", help="Devices (CPU worker slots, or simulated GPUs)."),
    policy: str = typer.Option("genserve", help="Scheduling policy (try fcfs to compare)."),
    profile: str = typer.Option("tiny-cpu", help="Latency profile: models, sizes, deadlines."),
    sigma: Optional[float] = typer.Option(None, help="SLO scale: deadline = sigma x 1.5 x isolated latency "
                                                     "(default 1 on the simulated engine, 2 on CPU worker slots, "
                                                     "where HTTP and worker overheads are large next to tiny "
                                                     "models)."),
    seed: int = typer.Option(0, help="Workload and generation seed."),
) -> None:
    """Start a server on 127.0.0.1, send a short mixed image/video workload over HTTP with the openai client,
    show live progress, write the outputs, and print SLO attainment."""
    import warnings

    from rich.console import Console

    from genserve.profiles import Profile

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # openai marks the videos API deprecated
    console = Console()
    if engine not in ("auto", "local", "sim"):
        _fail(f"--engine must be auto, local or sim, got {engine!r}")
    if images < 0 or videos < 0 or images + videos == 0:
        _fail("ask for at least one image or video")
    if workers <= 0:
        _fail("--workers must be positive")
    try:
        prof = Profile.load(profile)
    except GenServeError as e:
        _fail(str(e))
    kind = engine
    if engine in ("auto", "local"):
        why = _local_available()
        if why:
            if engine == "local":
                _fail(f"the local engine needs the model stack ({why}); install genserve[models] or use --engine sim")
            console.print(f"[yellow]local engine unavailable ({why}); using the simulated engine[/]")
            kind = "sim"
        else:
            kind = "local"
    if sigma is not None and sigma <= 0:
        _fail("--sigma must be positive")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="genserve-demo-") as tmp:
        srv, eng, kind = _start_demo_server(console, kind, engine == "auto", prof, policy, workers, sigma,
                                            Path(tmp))
        try:
            if kind == "local":
                prof = _calibrate(console, srv, eng, prof)
            jobs = _workload(images, videos, seed, prof)
            t0 = time.monotonic()
            _run_workload(console, srv, eng, jobs, seed, out)
            wall = time.monotonic() - t0
            stats = eng.stats()
        finally:
            srv.stop()
    _report(console, jobs, stats, wall, out, kind, policy, workers)


def _start_demo_server(console, kind: str, may_fall_back: bool, prof, policy: str, workers: int, sigma: float,
                       data_dir: Path):
    from genserve.server.app import create_app
    from genserve.server.runner import ServerThread
    from genserve.server.settings import ServerSettings

    key = secrets.token_urlsafe(16)
    chosen = sigma
    while True:
        sigma = chosen if chosen is not None else (2.0 if kind == "local" else 1.0)
        settings = ServerSettings(data_dir=data_dir / kind, profile=prof, api_key=key, engine_kind=kind,
                                  default_sigma=sigma)
        what = f"{workers} CPU worker slots with tiny models" if kind == "local" else f"{workers} simulated GPUs"
        try:
            with console.status(f"starting genserve on 127.0.0.1 ({what})..."):
                eng = _build_engine(kind, prof, policy, workers, "cpu", settings.outputs_dir, 1)
                srv = ServerThread(create_app(eng, settings)).start(timeout=300)
        except Exception as e:  # noqa: BLE001 - fall back to the simulated engine once
            if kind == "local" and may_fall_back:
                console.print(f"[yellow]local engine failed to start ({e}); using the simulated engine[/]")
                kind = "sim"
                continue
            _fail(f"could not start the server: {e}")
        srv.api_key = key
        console.print(f"[bold]genserve[/] serving at [cyan]{srv.url}/v1[/] (engine [bold]{kind}[/]: {what}; "
                      f"policy [bold]{policy}[/]; SLO sigma {sigma:g})")
        return srv, eng, kind


def _calibrate(console, srv, eng, prof):
    """Warm the workers up with one image and one short video, and scale the profile to the measured speed, so
    that deadlines (sigma x 1.5 x isolated latency) and the scheduler's estimates fit this machine."""
    import openai

    client = openai.OpenAI(base_url=srv.url + "/v1", api_key=srv.api_key, max_retries=0, timeout=300)
    d = prof.doc.defaults
    iw, ih = sorted(d.image_sizes, key=lambda s: s[0] * s[1])[min(1, len(d.image_sizes) - 1)]
    vw, vh, vf = sorted(d.video_sizes, key=lambda s: s[0] * s[1] * s[2])[0]
    steps = 8
    with console.status("calibrating: one warm-up image and video to measure this machine's speed..."):
        r = client.images.generate(prompt="warm-up", size=f"{iw}x{ih}",
                                   extra_body={"num_inference_steps": steps, "deadline_s": 600, "seed": 0})
        t_img = r.model_extra["genserve"]["latency_s"]
        v = client.videos.create(prompt="warm-up", size=f"{vw}x{vh}",
                                 extra_body={"num_frames": vf, "num_inference_steps": steps, "deadline_s": 600})
        while v.status in ("queued", "in_progress"):
            time.sleep(0.05)
            v = client.videos.retrieve(v.id)
        t_vid = v.model_extra.get("latency_s") or 0.0
    k_img = max(1.0, t_img / prof.image_latency(d.image_model, iw, ih, 1, steps))
    k_vid = max(1.0, t_vid / prof.isolated_latency("video", d.video_model, vw, vh, vf, steps))
    scaled = prof.scaled(k_img, k_vid, f"{prof.name}-calibrated")
    eng.set_profile(scaled)  # no request is live: the controller and the server switch to the measured speed
    srv.app.state.server.settings.profile = scaled
    console.print(f"calibrated: this machine runs tiny images {k_img:.0f}x and videos {k_vid:.0f}x slower than "
                  f"the {prof.name} profile; deadlines and estimates use the measured speed")
    return scaled


def _run_workload(console, srv, eng, jobs: list[_Job], seed: int, out: Path) -> None:
    import openai
    from rich.live import Live

    client = openai.OpenAI(base_url=srv.url + "/v1", api_key=srv.api_key, max_retries=2, timeout=300)
    t0 = time.monotonic()
    lock = threading.Lock()

    def run(job: _Job) -> None:
        delay = job.at - (time.monotonic() - t0)
        if delay > 0:
            time.sleep(delay)
        job.started = time.monotonic() - t0
        job.status = "queued"
        extra = {"seed": seed + job.n, "num_inference_steps": job.steps}
        try:
            if job.kind == "image":
                job.status = "generating"
                r = client.images.generate(prompt=job.prompt, size=job.size, response_format="b64_json",
                                           extra_body=extra)
                g = r.model_extra.get("genserve", {})
                job.id = g.get("ids", [None])[0]
                job.deadline_s = g.get("deadline_s")
                job.latency_s = g.get("latency_s")
                job.met = (g.get("met_deadline") or [None])[0]
                job.path = out / f"{job.n:02d}-image-{job.size}.png"
                job.path.write_bytes(base64.b64decode(r.data[0].b64_json))
                job.progress = 100
            else:
                extra["num_frames"] = job.frames
                v = client.videos.create(prompt=job.prompt, size=job.size, extra_body=extra)
                job.id = v.id
                while v.status in ("queued", "in_progress"):
                    job.status, job.progress = v.status, v.progress
                    u = eng.status(v.id)
                    if u is not None and u.status.value == "paused":
                        job.status, job.paused_seen = "paused", True
                    time.sleep(0.05)
                    v = client.videos.retrieve(v.id)
                job.progress = v.progress
                job.met = v.model_extra.get("met_deadline")
                job.deadline_s = v.model_extra.get("deadline_s")
                job.latency_s = v.model_extra.get("latency_s")
                if v.status != "completed":
                    raise RuntimeError(v.error.message if v.error else v.status)
                job.path = out / f"{job.n:02d}-video-{job.size}x{job.frames}f.mp4"
                job.path.write_bytes(client.videos.download_content(v.id).content)
            job.status = "done"
        except Exception as e:  # noqa: BLE001 - show it in the table
            job.status = "failed"
            job.error = str(e)[:200]
        finally:
            with lock:
                job.finished = time.monotonic() - t0

    with Live(_live_table(jobs, 0.0), console=console, refresh_per_second=10, transient=False) as live:
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = [pool.submit(run, j) for j in jobs]
            while not all(f.done() for f in futures):
                live.update(_live_table(jobs, time.monotonic() - t0))
                time.sleep(0.1)
        live.update(_live_table(jobs, time.monotonic() - t0))


_STYLE = {"waiting": "dim", "queued": "yellow", "generating": "cyan", "in_progress": "cyan", "paused": "magenta",
          "done": "green", "failed": "red"}


def _bar(pct: int, width: int = 20) -> str:
    full = int(width * pct / 100)
    return "█" * full + "░" * (width - full)


def _live_table(jobs: list[_Job], elapsed: float):
    from rich.table import Table

    t = Table(title=f"genserve demo: {len(jobs)} requests over HTTP ({elapsed:4.1f} s)", title_justify="left",
              pad_edge=False, box=None, header_style="bold")
    for col, kw in (("#", {"justify": "right"}), ("kind", {}), ("size", {}),
                    ("status", {}), ("progress", {}), ("latency", {"justify": "right"}),
                    ("deadline", {"justify": "right"}), ("SLO", {})):
        t.add_column(col, no_wrap=True, **kw)
    for j in jobs:
        size = j.size + (f"x{j.frames}" if j.kind == "video" else "")
        if j.latency_s is not None:
            lat = f"{j.latency_s:.2f}s"
        elif j.finished is not None and j.started is not None:
            lat = f"{j.finished - j.started:.2f}s"
        elif j.started is not None:
            lat = f"{elapsed - j.started:.2f}s"
        else:
            lat = ""
        slo = "" if j.met is None else ("[green]met[/]" if j.met else "[red]missed[/]")
        status = "paused>done" if j.paused_seen and j.status == "done" else j.status
        pct = j.progress if (j.kind == "video" or j.status == "done") else 0
        bar = f"{_bar(pct, 10)} {pct:3d}%"
        t.add_row(str(j.n), j.kind, size, f"[{_STYLE.get(j.status, '')}]{status}[/]", bar, lat,
                  f"{j.deadline_s:.2f}s" if j.deadline_s else "", slo)
    return t


def _report(console, jobs: list[_Job], stats, wall: float, out: Path, kind: str, policy: str, workers: int) -> None:
    from rich.table import Table

    console.print()
    t = Table(title="SLO attainment (deadline = sigma x 1.5 x isolated latency)", title_justify="left")
    for col in ("modality", "requests", "met deadline", "attainment", "median latency"):
        t.add_column(col, justify="right" if col != "modality" else "left")
    rows = []
    for mod in ("image", "video"):
        js = [j for j in jobs if j.kind == mod]
        if not js:
            continue
        met = sum(1 for j in js if j.met)
        lats = sorted(j.latency_s for j in js if j.latency_s is not None and j.status == "done")
        med = f"{lats[len(lats) // 2]:.2f}s" if lats else "-"
        rows.append((mod, len(js), met))
        t.add_row(mod, str(len(js)), str(met), f"{100 * met / len(js):.0f}%", med)
    total, met = sum(r[1] for r in rows), sum(r[2] for r in rows)
    t.add_row("[bold]all[/]", str(total), str(met), f"[bold]{100 * met / max(1, total):.0f}%[/]", "")
    console.print(t)
    failed = [j for j in jobs if j.status == "failed"]
    for j in failed:
        console.print(f"[red]request {j.n} ({j.kind}) failed:[/] {j.error}")
    files = sorted(p.name for p in out.iterdir() if p.suffix in (".png", ".mp4"))
    written = [j for j in jobs if j.path is not None and j.path.exists()]
    console.print(f"scheduler: {stats.preemptions} video pauses, {stats.sp_changes} SP-degree changes; "
                  f"GPU busy {', '.join(f'{100 * s:.0f}%' for s in stats.gpu_busy_share)}")
    note = " (placeholder images/videos: the simulated engine runs no models)" if kind == "sim" else ""
    console.print(f"wrote {len(written)} files to [cyan]{out}/[/]{note}: {', '.join(files[:4])}"
                  f"{', ...' if len(files) > 4 else ''}")
    console.print(f"done in {wall:.1f} s with engine {kind}, policy {policy}, {workers} devices. "
                  f"Serve it yourself: [bold]genserve serve{' --engine sim' if kind == 'sim' else ''}[/]")
    summary = {"engine": kind, "policy": policy, "devices": workers, "wall_s": round(wall, 3),
               "slo_attainment": met / max(1, total), "preemptions": stats.preemptions,
               "sp_changes": stats.sp_changes,
               "requests": [{"n": j.n, "kind": j.kind, "id": j.id, "size": j.size, "frames": j.frames,
                             "steps": j.steps, "status": j.status, "latency_s": j.latency_s,
                             "deadline_s": j.deadline_s,
                             "met_deadline": j.met, "file": j.path.name if j.path else None, "error": j.error}
                            for j in jobs]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if failed:
        raise typer.Exit(1)


__all__ = ["demo", "serve"]
