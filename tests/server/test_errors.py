"""Every bad input gets the documented OpenAI-style 4xx error, never a 500."""

from __future__ import annotations

import json

import httpx
import pytest

from server_helpers import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
IMG = "/v1/images/generations"
VID = "/v1/videos"


def _check(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"] and "Traceback" not in err["message"]
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    return err


@pytest.fixture()
def http(sim_server):
    with httpx.Client(base_url=sim_server.url, timeout=20) as c:
        yield c


@pytest.mark.parametrize("body,status,code,param", [
    (b"{", 400, "invalid_json", None),
    (b'{"prompt": "x",}', 400, "invalid_json", None),
    (b"[1, 2]", 400, "invalid_json", None),
    (b"", 400, "invalid_json", None),
    (b"\xff\xfe", 400, "invalid_json", None),
    (b'{"prompt": ""}', 400, "empty_prompt", "prompt"),
    (b'{"prompt": "   "}', 400, "empty_prompt", "prompt"),
    (b'{"n": 1}', 400, "missing_field", "prompt"),
    (b'{"prompt": 5}', 400, "invalid_value", "prompt"),
    (b'{"prompt": "x", "size": "64by64"}', 400, "invalid_size", "size"),
    (b'{"prompt": "x", "size": "64x"}', 400, "invalid_size", "size"),
    (b'{"prompt": "x", "size": "0x64"}', 400, "invalid_size", "size"),
    (b'{"prompt": "x", "size": "99999x64"}', 400, "invalid_size", "size"),
    (b'{"prompt": "x", "size": "4096x4096"}', 400, None, "size"),
    (b'{"prompt": "x", "size": "512x512"}', 400, "unsupported_size", "size"),
    (b'{"prompt": "x", "n": 100}', 400, "invalid_n", "n"),
    (b'{"prompt": "x", "n": 0}', 400, "invalid_n", "n"),
    (b'{"prompt": "x", "n": "many"}', 400, "invalid_value", "n"),
    (b'{"prompt": "x", "model": "dall-e-3"}', 404, "model_not_found", "model"),
    (b'{"prompt": "x", "model": "tiny-wan"}', 400, "wrong_modality", "model"),
    (b'{"prompt": "x", "response_format": "gif"}', 400, "invalid_value", "response_format"),
    (b'{"prompt": "x", "num_inference_steps": 0}', 400, "invalid_value", "num_inference_steps"),
    (b'{"prompt": "x", "num_inference_steps": 100000}', 400, "invalid_value", "num_inference_steps"),
    (b'{"prompt": "x", "seed": -1}', 400, "invalid_value", "seed"),
    (b'{"prompt": "x", "deadline_s": -3}', 400, "invalid_value", "deadline_s"),
    (b'{"prompt": "x", "deadline_s": 3, "sigma": 1}', 400, "invalid_value", "deadline_s"),
    (b'{"prompt": "x", "sigma": 0}', 400, "invalid_value", "sigma"),
    (b'{"prompt": "x", "guidance_scale": 1e9}', 400, "invalid_value", "guidance_scale"),
    (b'{"prompt": "x", "bogus": 1}', 400, "unknown_field", "bogus"),
    (b'{"prompt": "x", "stream": true}', 400, "invalid_value", "stream"),
])
def test_bad_image_requests(http, body, status, code, param):
    r = http.post(IMG, content=body, headers={**AUTH, "Content-Type": "application/json"})
    _check(r, status, code, param)


def test_prompt_too_long(http, sim_server):
    limit = sim_server.settings.max_prompt_chars
    _check(http.post(IMG, json={"prompt": "a" * (limit + 1)}, headers=AUTH), 400, "prompt_too_long", "prompt")


@pytest.mark.parametrize("data,status,code,param", [
    ({"prompt": ""}, 400, "empty_prompt", "prompt"),
    ({"prompt": "x", "size": "wide"}, 400, "invalid_size", "size"),
    ({"prompt": "x", "seconds": "forever"}, 400, "invalid_value", "seconds"),
    ({"prompt": "x", "seconds": "100000"}, 400, "invalid_value", "seconds"),
    ({"prompt": "x", "num_frames": "0"}, 400, "invalid_value", "num_frames"),
    ({"prompt": "x", "num_frames": "10000"}, 400, "invalid_value", "num_frames"),
    ({"prompt": "x", "model": "sora-2"}, 404, "model_not_found", "model"),
    ({"prompt": "x", "model": "tiny-sd3"}, 400, "wrong_modality", "model"),
    ({"prompt": "x", "num_inference_steps": "lots"}, 400, "invalid_value", "num_inference_steps"),
    ({"prompt": "x", "size": "1024x1024"}, 400, "unsupported_size", "size"),
])
def test_bad_video_requests_form_and_json(http, data, status, code, param):
    _check(http.post(VID, data=data, headers=AUTH), status, code, param)  # urlencoded form
    _check(http.post(VID, files={k: (None, str(v)) for k, v in data.items()}, headers=AUTH), status, code,
           param)  # multipart, as the openai client sends
    _check(http.post(VID, json=data, headers=AUTH), status, code, param)


def test_video_file_upload_refused(http):
    r = http.post(VID, data={"prompt": "x"}, files={"input_reference": ("a.png", b"\x89PNG", "image/png")},
                  headers=AUTH)
    _check(r, 400, "unsupported_parameter", "input_reference")


def test_unsupported_content_type(http):
    _check(http.post(IMG, content=b"prompt=x", headers={**AUTH, "Content-Type": "text/plain"}), 415,
           "unsupported_media_type")


def test_body_too_large(http, sim_server):
    limit = sim_server.settings.max_body_bytes
    big = json.dumps({"prompt": "x" * (limit + 10)}).encode()
    _check(http.post(IMG, content=big, headers={**AUTH, "Content-Type": "application/json"}), 413,
           "body_too_large")

    def chunks():  # no Content-Length: the limit applies while the body streams in
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    _check(http.post(VID, content=chunks(), headers={**AUTH, "Content-Type": "application/json"}), 413,
           "body_too_large")


@pytest.mark.parametrize("headers,code", [
    ({}, "missing_api_key"),
    ({"Authorization": "Bearer wrong-key"}, "invalid_api_key"),
    ({"Authorization": f"Basic {API_KEY}"}, "invalid_api_key"),
    ({"Authorization": "Bearer"}, "invalid_api_key"),
])
def test_auth(http, headers, code):
    for method, path in (("POST", IMG), ("POST", VID), ("GET", VID), ("GET", "/v1/models"), ("GET", "/metrics"),
                         ("DELETE", VID + "/video_" + "0" * 24)):
        r = http.request(method, path, json={"prompt": "x"} if method == "POST" else None, headers=headers)
        err = _check(r, 401, code)
        assert err["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"
    assert http.get("/health").status_code == 200  # health stays open


def test_openai_client_wrong_key(sim_server):
    import openai

    from server_helpers import openai_client

    with pytest.raises(openai.AuthenticationError):
        openai_client(sim_server, api_key="nope").images.generate(prompt="x")


@pytest.mark.parametrize("path,status,code", [
    ("/v1/videos/video_" + "0" * 24, 404, "video_not_found"),
    ("/v1/videos/../../etc/passwd", 404, None),
    ("/v1/videos/..%2F..%2Fjobs.sqlite3", 404, None),
    ("/v1/videos/img_" + "0" * 24, 404, "video_not_found"),
    ("/v1/videos/video_" + "0" * 24 + "/content", 404, "video_not_found"),
    ("/v1/videos?limit=0", 400, "invalid_value"),
    ("/v1/videos?limit=1000", 400, "invalid_value"),
    ("/v1/videos?limit=abc", 400, "invalid_value"),
    ("/v1/videos?order=sideways", 400, "invalid_value"),
    ("/v1/videos?after=nope", 400, "invalid_value"),
    ("/v1/videos?after=video_" + "1" * 24, 400, "invalid_value"),
    ("/v1/models/nope", 404, "model_not_found"),
    ("/v1/nothing-here", 404, "not_found"),
    ("/v1/images/img_" + "0" * 24 + "/content", 404, "image_not_found"),
    ("/v1/images/..%2Fjobs.sqlite3/content", 404, None),
])
def test_bad_paths(http, path, status, code):
    _check(http.get(path, headers=AUTH), status, code)


def test_wrong_method(http):
    _check(http.put("/v1/videos", headers=AUTH), 405, "method_not_allowed")


def test_content_not_ready_and_delete_twice(http):
    r = http.post(VID, json={"prompt": "long one", "size": "64x64", "num_inference_steps": 200}, headers=AUTH)
    assert r.status_code == 200, r.text
    vid = r.json()["id"]
    err = _check(http.get(f"{VID}/{vid}/content", headers=AUTH), 409, "video_not_ready")
    assert "poll" in err["message"]
    _check(http.get(f"{VID}/{vid}/content?variant=thumbnail", headers=AUTH), 400, "invalid_value", "variant")
    assert http.delete(f"{VID}/{vid}", headers=AUTH).json()["deleted"] is True  # active: gone at once
    _check(http.get(f"{VID}/{vid}", headers=AUTH), 404, "video_not_found")
    _check(http.get(f"{VID}/{vid}/content", headers=AUTH), 404, "video_not_found")
    _check(http.delete(f"{VID}/{vid}", headers=AUTH), 404, "video_not_found")


def test_openapi_docs(http):
    r = http.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert {"/v1/images/generations", "/v1/videos", "/v1/videos/{video_id}", "/v1/videos/{video_id}/content",
            "/v1/models", "/health", "/metrics"} <= set(paths)
    assert http.get("/docs").status_code == 200
