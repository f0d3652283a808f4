"""Operations: /health (no key) and /metrics (Prometheus text)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from genserve.server.auth import require_key
from genserve.server.service import JobService, service

router = APIRouter()


@router.get("/health")
async def health(server: JobService = Depends(service)):
    settings, engine = server.settings, server.engine
    engine_error = getattr(engine, "error", None)
    lifecycle = getattr(server, "lifecycle", None)  # phases: starting, ready, draining, stopping, failed
    phase = lifecycle.phase if lifecycle is not None else "ready"
    engine_error = engine_error or (lifecycle.error if lifecycle is not None else None)
    ok = server.ready and not server._closing and not engine_error and phase == "ready"
    status = "ok" if ok else "unavailable" if engine_error or phase in ("ready", "failed") else phase
    body = {"status": status, "engine": settings.engine_kind,
            "in_flight": server.active_count(), "uptime_s": round(time.time() - server.started_at, 3)}
    if engine_error:
        body["error"] = f"engine stopped: {engine_error}"
    return JSONResponse(body, status_code=200 if ok else 503)

@router.get("/metrics", dependencies=[Depends(require_key)])
async def metrics(server: JobService = Depends(service)):
    data = await asyncio.to_thread(server.metrics.render)
    return Response(data, media_type="text/plain; version=0.0.4; charset=utf-8")
