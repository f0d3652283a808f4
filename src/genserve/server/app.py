"""The FastAPI app: OpenAI-compatible images and videos over any ServingEngine.

    app = create_app(engine, settings)        # engine: genserve.engine.api.ServingEngine
    uvicorn.run(app, host="127.0.0.1", port=8000)

Routes (see docs/api.md; one module each under genserve.server.routes):
    POST   /v1/images/generations      images, answered when done (n images = n engine requests)
    GET    /v1/images/{id}/content     a generated PNG (the target of `url` responses)
    POST   /v1/videos                  create a video job (multipart/form-data like the openai client, or JSON)
    GET    /v1/videos                  list jobs (limit, after, order)
    GET    /v1/videos/{id}             a job
    GET    /v1/videos/{id}/content     the MP4 once completed
    DELETE /v1/videos/{id}             gone at once; active work is cancelled at its next step boundary
    GET    /v1/models, /v1/models/{id}, /health, /metrics
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from genserve.engine.api import ServingEngine
from genserve.server.errors import install_error_handlers
from genserve.server.lifecycle import Gate, Lifecycle
from genserve.server.middleware import BodyLimit, Instrument
from genserve.server.openapi import install_openapi
from genserve.server.routes import images, models, ops, videos
from genserve.server.service import JobService
from genserve.server.settings import ServerSettings

log = logging.getLogger("genserve.server")


def create_app(engine: ServingEngine, settings: ServerSettings) -> FastAPI:
    """The ASGI app. Its lifespan starts the engine in the background (the API answers 503 until it is ready),
    then re-submits unfinished jobs (server/lifecycle.py); on exit it closes the engine (unless
    settings.close_engine_on_shutdown is False)."""
    server = JobService(engine, settings)
    lifecycle = Lifecycle(server, engine, settings)
    server.lifecycle = lifecycle  # /health reads the phase

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.outputs.sweep_temp()
        lifecycle.begin_start()
        try:
            yield
        finally:
            await lifecycle.shutdown()
            server.close()
            if settings.close_engine_on_shutdown:
                await asyncio.to_thread(engine.close, False)
            server.store.close()

    app = FastAPI(title="genserve", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible text-to-image and text-to-video serving with SLO-aware scheduling.")
    app.state.server = server
    app.state.lifecycle = lifecycle
    install_error_handlers(app)
    install_openapi(app, settings)  # the 4xx the server sends, no 422, the limits it checks
    app.add_middleware(Gate, lifecycle=lifecycle)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, timeout=settings.body_timeout_s)
    app.add_middleware(Instrument, server=server)  # outermost: stamps arrival, counts responses
    for router in (images.router, videos.router, models.router, images.public, ops.router):
        app.include_router(router)
    return app
