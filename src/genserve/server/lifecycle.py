"""Start-up and shutdown of a serving process (docs/api.md, "Start-up and shutdown").

Phases: starting -> ready -> draining -> stopping (or starting -> failed).

* starting: the socket is already bound and answers at once: /health 503 "starting", every /v1 route 503
  `unavailable` with Retry-After, while the engine starts (workers load their models) in a background thread.
  Then unfinished jobs are re-submitted (JobService.recover) and the phase turns ready. An engine that fails to
  start makes the process exit non-zero (`Lifecycle.error`).
* draining (first SIGTERM or SIGINT): POSTs answer 503 `unavailable` with Retry-After, GETs and DELETEs still
  work, /health answers 503 "draining"; admitted work runs on for up to the drain timeout, or until a second
  signal cuts it short.
* stopping: images still running are answered 503 (send again) and their rows marked `interrupted`; engine
  updates are ignored from here, so videos stay queued / in_progress in the store and the next start re-submits
  them. Then uvicorn closes the socket and the lifespan closes the engine; the exit status is 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time

import uvicorn

from genserve.server.errors import APIError, error_response

log = logging.getLogger("genserve.server")


class Lifecycle:
    """The phase of one app and the transitions between phases (all on the event loop, except `error`)."""

    def __init__(self, service, engine, settings) -> None:
        self.service = service
        self.engine = engine
        self.settings = settings
        self.phase = "starting"
        self.error: str | None = None  # why the engine did not start
        self.request_exit = lambda: None  # set by the uvicorn server that runs the app
        self.after_start = lambda: None  # the same: runs on the loop once the engine's start returned
        self._started = threading.Event()  # the engine's start() returned (successfully or not)
        self._cut: asyncio.Event | None = None
        self._drain: asyncio.Task | None = None
        self._start: asyncio.Task | None = None

    # ---- start-up --------------------------------------------------------------------------------------------
    def begin_start(self) -> None:
        """Start the engine in the background (the lifespan calls this, so the socket answers meanwhile)."""
        self._start = asyncio.get_running_loop().create_task(self._start_engine())

    async def _start_engine(self) -> None:
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def run() -> None:  # a daemon thread, not to_thread: a forced exit must not wait for a model load
            try:
                self.engine.start()
                result = None
            except BaseException as e:  # noqa: BLE001 - reported as the process's error
                result = e
            self._started.set()
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(result))

        threading.Thread(target=run, name="genserve-engine-start", daemon=True).start()
        failure = await done
        self.after_start()
        if failure is not None:
            self.error = f"the {self.settings.engine_kind} engine did not start: {failure}"
            self.phase = "failed"
            log.error("%s", self.error)
            self.request_exit()
            return
        if self.phase != "starting":  # a signal came while starting: no recovery, stop
            return
        self.service.ready = True
        resumed, failed = await asyncio.to_thread(self.service.recover)
        if resumed or failed:
            log.info("restart: re-submitted %d unfinished videos, failed %d interrupted images", resumed, failed)
        if self.phase == "starting":
            self.phase = "ready"
            log.info("ready: engine %s started in %.1f s", self.settings.engine_kind, time.monotonic() - t0)

    # ---- shutdown --------------------------------------------------------------------------------------------
    def begin_drain(self, timeout: float | None = None) -> None:
        """First signal: stop admissions, let admitted work finish for up to `timeout` s, then stop."""
        if self._drain is not None:
            return
        self._cut = asyncio.Event()
        t = self.settings.drain_timeout_s if timeout is None else timeout
        self._drain = asyncio.get_running_loop().create_task(self._drain_then_stop(t))

    def cut_short(self) -> None:
        """Second signal: end the drain now (what is left stays re-submittable)."""
        if self._cut is not None:
            self._cut.set()

    async def _drain_then_stop(self, timeout: float) -> None:
        if self.phase != "ready":  # starting or failed: nothing admitted yet that could finish
            self.phase = "stopping"
            self.request_exit()
            return
        self.phase = "draining"
        svc = self.service
        t0 = time.monotonic()
        n0 = svc.active_count()
        log.info("draining: %d jobs in flight, new requests refused; up to %g s (signal again to stop now)",
                 n0, timeout)
        while svc.active_count() and time.monotonic() - t0 < timeout and not getattr(self.engine, "error", None):
            try:
                await asyncio.wait_for(self._cut.wait(), 0.05)
                log.info("second signal: ending the drain")
                break
            except asyncio.TimeoutError:
                pass
        self.phase = "stopping"
        left = svc.active_count()
        svc.close()  # images still waiting: 503 (send again); videos stay queued / in_progress for the next start
        log.info("drained in %.1f s: %d of %d jobs finished, %d left for the next start (videos) or answered "
                 "503 (images)", time.monotonic() - t0, n0 - min(n0, left), n0, left)
        self.request_exit()

    async def shutdown(self) -> None:
        """The lifespan's exit: wait until a start in progress returns, so that close never races with it."""
        if self.phase in ("starting", "ready", "draining"):
            self.phase = "stopping"
        await asyncio.to_thread(self._started.wait)


class Gate:
    """Pure ASGI middleware: /v1 answers 503 `unavailable` (Retry-After) while starting, and refuses new POSTs
    while draining or stopping; GETs and DELETEs still work then (clients follow their jobs to the end)."""

    def __init__(self, app, lifecycle: Lifecycle) -> None:
        self.app = app
        self.lc = lifecycle

    async def __call__(self, scope, receive, send):
        phase = self.lc.phase
        if phase != "ready" and scope["type"] == "http" and scope["path"].startswith("/v1/"):
            retry = {"Retry-After": str(self.lc.settings.retry_after_s)}
            if phase in ("starting", "failed"):
                err = APIError(503, "the server is starting (loading models); retry shortly", code="unavailable",
                               headers=retry)
                return await error_response(err)(scope, receive, send)
            if scope["method"] == "POST":
                err = APIError(503, "the server is shutting down and admits no new work; retry shortly (after "
                                    "the restart, or on another instance)", code="unavailable", headers=retry)
                return await error_response(err)(scope, receive, send)
        return await self.app(scope, receive, send)


class Server(uvicorn.Server):
    """uvicorn with genserve's signal handling: the first SIGTERM / SIGINT drains instead of stopping at once,
    a second one ends the drain, a third stops without waiting for connections. uvicorn's own handler would
    close the socket at once, wait for every open request without bound, and re-raise the signal at exit
    (status -15 even after a clean stop)."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        lifecycle.request_exit = self._exit
        lifecycle.after_start = self._reclaim_signals

    def _exit(self) -> None:
        self.should_exit = True

    def _reclaim_signals(self) -> None:
        # an engine's start may put C-level handlers over ours (Ray's core worker does, for SIGTERM, and then
        # aborts the process at exit): install ours again (main thread only, like uvicorn's own)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) == self.handle_exit:
                    signal.signal(sig, self.handle_exit)

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame) -> None:
        # runs in the main thread between bytecodes: hand over to the loop, never re-raise the signal later
        self.signals += 1
        if self._loop is None or self.signals >= 3:
            self.force_exit = self.signals >= 3
            self.should_exit = True
        else:
            self._loop.call_soon_threadsafe(self._on_signal, sig, self.signals)

    def _on_signal(self, sig: int, n: int) -> None:
        log.info("received %s", signal.Signals(sig).name)
        if n == 1:
            self.lifecycle.begin_drain()
        else:
            self.lifecycle.cut_short()


def log_to_stderr(level: str) -> None:
    """genserve's own loggers (server, engine, jobs) on stderr at `level`, next to uvicorn's lines."""
    lg = logging.getLogger("genserve")
    if any(getattr(h, "_genserve", False) for h in lg.handlers):
        return
    h = logging.StreamHandler()
    h._genserve = True
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    lg.addHandler(h)
    lg.setLevel({"trace": "DEBUG", "critical": "CRITICAL"}.get(level.lower(), level.upper()))
    lg.propagate = False


def serve_app(app, sock: socket.socket, log_level: str = "info") -> Server:
    """Run `app` (from create_app) on `sock` in this (main) thread until it has stopped; returns the server
    (its lifecycle's `error` says whether the engine failed to start, `force_exit` whether it was cut)."""
    from genserve.server.protocol import JSONErrorProtocol  # OpenAI-style 400 for unparseable HTTP

    config = uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=5,
                            http=JSONErrorProtocol)
    server = Server(config, app.state.lifecycle)
    server.run(sockets=[sock])
    return server
