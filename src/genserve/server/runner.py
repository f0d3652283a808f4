"""Run the app under uvicorn in a background thread (demo, benchmarks, tests); bind `genserve serve`'s socket."""

from __future__ import annotations

import socket
import threading
import time


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts (a port in use is a clean error at once)."""
    h = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in h else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((h, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


class ServerThread:
    """uvicorn serving `app` on host:port in a daemon thread; `start()` returns once it accepts connections and
    the engine of a create_app app is ready. No signal handling (not the main thread): `stop()` stops at once."""

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None, log_level: str = "warning",
                 access_log: bool = False) -> None:
        import uvicorn

        self.app = app
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        from genserve.server.protocol import JSONErrorProtocol  # OpenAI-style 400 for unparseable HTTP

        config = uvicorn.Config(app, host=host, port=self.port, log_level=log_level, lifespan="on",
                                access_log=access_log, timeout_graceful_shutdown=5, http=JSONErrorProtocol)
        self.lifecycle = getattr(getattr(app, "state", None), "lifecycle", None)  # create_app's apps have one
        if self.lifecycle is not None:
            from genserve.server.lifecycle import Server

            self.server = Server(config, self.lifecycle)
        else:
            self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="genserve-uvicorn", daemon=True)

    def _ready(self) -> bool:
        if self.lifecycle is None:
            return self.server.started
        if self.lifecycle.error:
            self.stop()
            raise RuntimeError(self.lifecycle.error)
        return self.server.started and self.lifecycle.phase == "ready"

    def start(self, timeout: float = 300.0) -> "ServerThread":
        """Start, and return once it accepts connections and (for create_app's apps) the engine is ready."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.thread.is_alive():
                raise RuntimeError("the server exited during start-up (see the log above)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the server did not start within {timeout:.0f} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop at once, without draining: unfinished jobs stay in the store for the next start."""
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
