"""GET /v1/models and /v1/models/{id}: the profile's models, with their modality."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from genserve.server.auth import require_key
from genserve.server.errors import APIError
from genserve.server.service import JobService, service

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])


def _model_obj(server: JobService, name: str, modality: str) -> dict:
    return {"id": name, "object": "model", "created": int(server.started_at), "owned_by": "genserve",
            "modality": modality}

@router.get("/models")
async def models_list(server: JobService = Depends(service)):
    settings = server.settings
    prof = settings.profile
    data = [_model_obj(server, m, "image") for m in prof.image_models] + \
           [_model_obj(server, m, "video") for m in prof.video_models]
    return {"object": "list", "data": data}

@router.get("/models/{model_id}")
async def models_retrieve(model_id: str, server: JobService = Depends(service)):
    settings = server.settings
    prof = settings.profile
    if model_id in prof.image_models:
        return _model_obj(server, model_id, "image")
    if model_id in prof.video_models:
        return _model_obj(server, model_id, "video")
    raise APIError(404, f"model {model_id!r} does not exist; GET /v1/models lists them", param="model",
                   code="model_not_found")
