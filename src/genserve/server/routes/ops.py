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
    ok = server.ready and not server._closing and not engine_error
    body = {"status": "ok" if ok else "unavailable", "engine": settings.engine_kind,
            "in_flight": server.active_count(), "uptime_s": round(time.time() - server.started_at, 3)}
    if engine_error:
        body["error"] = f"engine stopped: {engine_error}"
    return JSONResponse(body, status_code=200 if ok else 503)

@router.get("/metrics", dependencies=[Depends(require_key)])
async def metrics(server: JobService = Depends(service)):
    data = await asyncio.to_thread(server.metrics.render)
    return Response(data, media_type="text/plain; version=0.0.4; charset=utf-8")
