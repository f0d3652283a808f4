"""A corpus of malformed input over real HTTP: every case is a 4xx with an OpenAI-style error body, never a 5xx,
never a hang (every client call has a timeout). Also: lone surrogates in rows written by older versions, clients
that disconnect mid-upload or never send their body, and HTTP that uvicorn itself cannot parse."""

from __future__ import annotations

import json
import logging
import re
import socket
import sqlite3
import time
from urllib.parse import urlsplit

import httpx
import pytest

from server_helpers import API_KEY, live_server, make_settings, sim_engine

AUTH = {"Authorization": f"Bearer {API_KEY}"}
JSON = {**AUTH, "Content-Type": "application/json"}
IMG = "/v1/images/generations"
VID = "/v1/videos"
VIDEO_ID = "video_" + "0" * 24
BODY_TIMEOUT_S = 1.0
DEEP = 100_000


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    d = tmp_path_factory.mktemp("malformed")
    settings = make_settings(d, api_key=API_KEY, engine_kind="sim", body_timeout_s=BODY_TIMEOUT_S)
    with live_server(sim_engine(d), settings) as s:
        s.settings = settings
        yield s


@pytest.fixture()
def http(srv):
    with httpx.Client(base_url=srv.url, timeout=20) as c:
        yield c


def _check(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"] and "Traceback" not in err["message"]
    assert err["type"] == "invalid_request_error" or status == 401
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    return err


# ---- JSON bodies, on both POST endpoints ---------------------------------------------------------------------
_BOTH = [
    # lone surrogates (a 500 after the row was stored, and every later GET of it a 500)
    (b'{"prompt": "x\\ud800y"}', 400, "invalid_value", "prompt"),
    (b'{"prompt": "x\\udfff"}', 400, "invalid_value", "prompt"),
    (b'{"prompt": "x", "user": "\\ud83d"}', 400, "invalid_value", "user"),
    (b'{"prompt": "x", "negative_prompt": "a\\ud800"}', 400, "invalid_value", "negative_prompt"),
    (b'{"prompt": "x", "user": ["\\ud800"]}', 400, "invalid_value", "user"),
    (b'{"prompt": "x", "\\ud800": 1}', 400, "invalid_value", None),
    # deep nesting (RecursionError), also unbalanced
    (b'{"prompt": "x", "user": ' + b"[" * DEEP + b"]" * DEEP + b"}", 400, "invalid_json", None),
    (b'{"prompt": "x", "user": ' + b'{"a": ' * DEEP + b"1" + b"}" * DEEP + b"}", 400, "invalid_json", None),
    (b'{"prompt": "x", "user": ' + b"[" * DEEP, 400, "invalid_json", None),
    (b"[" * DEEP + b"]" * DEEP, 400, "invalid_json", None),
    (b'{"prompt": "x", "user": "\\\\\\"' + b"[" * 1000 + b'"}', 200, None, None),  # brackets in a string: fine
    # integers over int()'s 4300-digit limit, and numbers JSON does not have
    (b'{"prompt": "x", "seed": ' + b"9" * 5000 + b"}", 400, "invalid_value", None),
    (b'{"prompt": "x", "seed": -' + b"9" * 5000 + b"}", 400, "invalid_value", None),
    (b'{"prompt": "x", "num_inference_steps": ' + b"1" * 4301 + b"}", 400, "invalid_value", None),
    (b'{"prompt": "x", "guidance_scale": 1e999}', 400, "invalid_value", None),
    (b'{"prompt": "x", "guidance_scale": -1e999}', 400, "invalid_value", None),
    (b'{"prompt": "x", "guidance_scale": NaN}', 400, "invalid_value", None),
    (b'{"prompt": "x", "deadline_s": Infinity}', 400, "invalid_value", None),
    (b'{"prompt": "x", "sigma": -Infinity}', 400, "invalid_value", None),
    (b'{"prompt": "x", "seed": 1' + b"0" * 25 + b"}", 400, "invalid_value", "seed"),
    # booleans and strings are not numbers in JSON
    (b'{"prompt": "x", "seed": true}', 400, "invalid_value", "seed"),
    (b'{"prompt": "x", "num_inference_steps": false}', 400, "invalid_value", "num_inference_steps"),
    (b'{"prompt": "x", "guidance_scale": true}', 400, "invalid_value", "guidance_scale"),
    (b'{"prompt": "x", "seed": "7"}', 400, "invalid_value", "seed"),
    (b'{"prompt": "x", "seed": 7.5}', 400, "invalid_value", "seed"),
    (b'{"prompt": "x", "sigma": "1"}', 400, "invalid_value", "sigma"),
    # wrong types
    (b'{"prompt": ["x"]}', 400, "invalid_value", "prompt"),
    (b'{"prompt": {"text": "x"}}', 400, "invalid_value", "prompt"),
    (b'{"prompt": null}', 400, "invalid_value", "prompt"),
    (b'{"prompt": true}', 400, "invalid_value", "prompt"),
    (b'{"prompt": "x", "model": 5}', 400, "invalid_value", "model"),
    (b'{"prompt": "x", "size": 64}', 400, "invalid_value", "size"),
    (b'{"prompt": "x", "user": 1}', 400, "invalid_value", "user"),
    # sizes: only ASCII digits, WxH, in range
    ('{"prompt": "x", "size": "٤٤x٤٤"}'.encode(), 400, "invalid_size", "size"),
    ('{"prompt": "x", "size": "６４x６４"}'.encode(), 400, "invalid_size", "size"),
    ('{"prompt": "x", "size": "²x²"}'.encode(), 400, "invalid_size", "size"),
    (b'{"prompt": "x", "size": "64x64\\n"}', 400, "invalid_size", "size"),
    (b'{"prompt": "x", "size": "64x64x64"}', 400, "invalid_size", "size"),
    (b'{"prompt": "x", "size": "-64x64"}', 400, "invalid_size", "size"),
    (b'{"prompt": "x", "size": "0x0"}', 400, "invalid_size", "size"),
    (b'{"prompt": "x", "size": "9999999x1"}', 400, "invalid_size", "size"),
    (b'{"prompt": "x", "size": "3x3"}', 400, "unsupported_size", "size"),
    # text
    (b'{"prompt": ""}', 400, "empty_prompt", "prompt"),
    (b'{"prompt": "\\u3000\\t\\n"}', 400, "empty_prompt", "prompt"),
    (b'{"prompt": "a\x01b"}', 400, "invalid_json", None),  # a raw control character inside a JSON string
    (b'{"prompt": "a\x00b"}', 400, "invalid_json", None),
    # not JSON, not an object, not UTF-8
    (b"{", 400, "invalid_json", None),
    (b"null", 400, "invalid_json", None),
    (b'"prompt"', 400, "invalid_json", None),
    (b"123", 400, "invalid_json", None),
    (b'{"prompt": "x"} {"prompt": "y"}', 400, "invalid_json", None),
    (b'{"prompt": "\xff\xfe"}', 400, "invalid_json", None),
    ('{"prompt": "x"}'.encode("utf-16"), 400, "invalid_json", None),
    (b'{"prompt": "x", "prompt": 5}', 400, "invalid_value", "prompt"),  # the last duplicate wins, then is checked
    # ranges
    (b'{"prompt": "x", "num_inference_steps": 0}', 400, "invalid_value", "num_inference_steps"),
    (b'{"prompt": "x", "seed": 4294967296}', 400, "invalid_value", "seed"),
    (b'{"prompt": "x", "guidance_scale": -0.5}', 400, "invalid_value", "guidance_scale"),
    (b'{"prompt": "x", "deadline_s": 0}', 400, "invalid_value", "deadline_s"),
    (b'{"prompt": "x", "sigma": 1e308}', 400, "invalid_value", "sigma"),
    (b'{"prompt": "x", "model": ""}', 200, None, None),  # "" means the default model
]


@pytest.mark.parametrize("path", [IMG, VID])
@pytest.mark.parametrize("body,status,code,param", _BOTH, ids=range(len(_BOTH)))
def test_json_corpus(http, path, body, status, code, param):
    r = http.post(path, content=body, headers=JSON)
    if status == 200:
        assert r.status_code == 200, r.text
    else:
        _check(r, status, code, param)


@pytest.mark.parametrize("path,body,status,code,param", [
    (IMG, {"prompt": "x", "n": True}, 400, "invalid_value", "n"),
    (IMG, {"prompt": "x", "n": "2"}, 400, "invalid_value", "n"),
    (IMG, {"prompt": "x", "n": 9}, 400, "invalid_n", "n"),
    (IMG, {"prompt": "x", "n": -1}, 400, "invalid_n", "n"),
    (IMG, {"prompt": "x", "partial_images": 2}, 400, "unsupported_parameter", "partial_images"),
    (IMG, {"prompt": "x", "partial_images": 0}, 400, "unsupported_parameter", "partial_images"),
    (IMG, {"prompt": "x", "input_reference": "a.png"}, 400, "unknown_field", "input_reference"),
    (IMG, {"prompt": "x", "stream": "false"}, 400, "invalid_value", "stream"),
    (IMG, {"prompt": "x", "num_frames": 9}, 400, "unknown_field", "num_frames"),
    (VID, {"prompt": "x", "input_reference": {"image_url": "https://example.com/a.png"}}, 400,
     "unsupported_parameter", "input_reference"),
    (VID, {"prompt": "x", "input_reference": "data:image/png;base64,AAAA"}, 400, "unsupported_parameter",
     "input_reference"),
    (VID, {"prompt": "x", "input_reference": None}, 400, "unsupported_parameter", "input_reference"),
    (VID, {"prompt": "x", "partial_images": 1}, 400, "unknown_field", "partial_images"),
    (VID, {"prompt": "x", "n": 2}, 400, "unknown_field", "n"),
    (VID, {"prompt": "x", "seconds": True}, 400, "invalid_value", "seconds"),
    (VID, {"prompt": "x", "seconds": "nan"}, 400, "invalid_value", "seconds"),
    (VID, {"prompt": "x", "seconds": "inf"}, 400, "invalid_value", "seconds"),
    (VID, {"prompt": "x", "seconds": "٤"}, 400, "invalid_value", "seconds"),
    (VID, {"prompt": "x", "seconds": "1e1"}, 400, "invalid_value", "seconds"),
    (VID, {"prompt": "x", "seconds": "0"}, 400, "invalid_value", "seconds"),
    (VID, {"prompt": "x", "seconds": -1}, 400, "invalid_value", "seconds"),
    (VID, {"prompt": "x", "num_frames": True}, 400, "invalid_value", "num_frames"),
    (VID, {"prompt": "x", "num_frames": 258}, 400, "invalid_value", "num_frames"),
])
def test_field_corpus(http, path, body, status, code, param):
    _check(http.post(path, json=body, headers=AUTH), status, code, param)


def test_whole_floats_are_integers(http):
    """JSON Schema's integer includes 2.0 (and json.dumps writes it so): accepted, unlike true or "2"."""
    r = http.post(IMG, json={"prompt": "x", "n": 2.0, "seed": 5.0, "size": "32x32"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["genserve"]["seeds"] == [5, 6]


# ---- forms (videos): multipart, as the openai client sends, and urlencoded ---------------------------------------
def _multipart(*parts: tuple[bytes, bytes], boundary: bytes = b"XyZ") -> tuple[bytes, dict]:
    body = b"".join(b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + name + b"\"\r\n\r\n"
                    + value + b"\r\n" for name, value in parts) + b"--" + boundary + b"--\r\n"
    return body, {**AUTH, "Content-Type": "multipart/form-data; boundary=" + boundary.decode()}


@pytest.mark.parametrize("parts,status,code,param", [
    ([(b"prompt", b"x\xff")], 400, "invalid_value", "prompt"),
    ([(b"prompt", b"x\xed\xa0\x80")], 400, "invalid_value", "prompt"),  # a surrogate encoded as UTF-8
    ([(b"prompt", b"x"), (b"user", b"\xc3")], 400, "invalid_value", "user"),
    ([(b"prompt", b"x"), (b"\xff", b"1")], 400, "invalid_value", None),
    ([(b"prompt", b"x"), (b"seed", "٤".encode())], 400, "invalid_value", "seed"),
    ([(b"prompt", b"x"), (b"num_frames", "９".encode())], 400, "invalid_value", "num_frames"),
    ([(b"prompt", b"x"), (b"seed", b"9" * 5000)], 400, "invalid_value", "seed"),
    ([(b"prompt", b"x"), (b"seed", b"true")], 400, "invalid_value", "seed"),
    ([(b"prompt", b"x"), (b"seed", b"")], 400, "invalid_value", "seed"),
    ([(b"prompt", b"x"), (b"seed", b"1_000")], 400, "invalid_value", "seed"),
    ([(b"prompt", b"x"), (b"sigma", b"nan")], 400, "invalid_value", "sigma"),
    ([(b"prompt", b"x"), (b"guidance_scale", b"inf")], 400, "invalid_value", "guidance_scale"),
    ([(b"prompt", b"x"), (b"guidance_scale", b"1e999")], 400, "invalid_value", "guidance_scale"),
    ([(b"prompt", b"x"), (b"size", "٦٤x٦٤".encode())], 400, "invalid_size", "size"),
    ([(b"prompt", b"x"), (b"seed", b"1"), (b"seed", b"2")], 400, "invalid_value", "seed"),
    ([(b"prompt", b"x"), (b"input_reference", b"a.png")], 400, "unsupported_parameter", "input_reference"),
    ([(b"prompt", b"")], 400, "empty_prompt", "prompt"),
    ([(b"seed", b"1")], 400, "missing_field", "prompt"),
    ([(b"prompt", b"x")] + [(f"f{i}".encode(), b"1") for i in range(70)], 400, "invalid_body", None),
])
def test_multipart_corpus(http, parts, status, code, param):
    body, headers = _multipart(*parts)
    _check(http.post(VID, content=body, headers=headers), status, code, param)


def test_multipart_form_numbers_still_work(http):
    body, headers = _multipart((b"prompt", b"x"), (b"seed", b"7"), (b"num_frames", b"9"), (b"sigma", b"1.5"),
                               (b"size", b"32x32"), (b"num_inference_steps", b"2.0"))
    r = http.post(VID, content=body, headers=headers)
    assert r.status_code == 200, r.text
    v = r.json()
    assert (v["seed"], v["num_frames"], v["num_inference_steps"]) == (7, 9, 2)


@pytest.mark.parametrize("body,headers,status,code", [
    (b"--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n--XyZ--\r\n",
     {"Content-Type": "multipart/form-data"}, 400, "invalid_body"),  # no boundary
    (b"this is not multipart", {"Content-Type": "multipart/form-data; boundary=XyZ"}, 400, None),
    (b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--\r\n",
     {"Content-Type": "multipart/form-data; boundary=XyZ"}, 400, "invalid_body"),  # a part without a name
    (b"--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"; filename=\"a.txt\"\r\n\r\nx\r\n--XyZ--\r\n",
     {"Content-Type": "multipart/form-data; boundary=XyZ"}, 400, "unsupported_parameter"),
    (b"prompt=x%FF", {"Content-Type": "application/x-www-form-urlencoded"}, 400, "invalid_value"),
    (b"prompt=x%ED%A0%80y", {"Content-Type": "application/x-www-form-urlencoded"}, 400, "invalid_value"),
    (b"prompt=x\xff", {"Content-Type": "application/x-www-form-urlencoded"}, 400, "invalid_value"),
    (b"prompt=x&seed=%D9%A4", {"Content-Type": "application/x-www-form-urlencoded"}, 400, "invalid_value"),
    (b"prompt=x&prompt=y", {"Content-Type": "application/x-www-form-urlencoded"}, 400, "invalid_value"),
    (b"prompt=x&seed=1&seed", {"Content-Type": "application/x-www-form-urlencoded"}, 400, "invalid_value"),
    (b"&&&", {"Content-Type": "application/x-www-form-urlencoded"}, 400, "missing_field"),
    (b"prompt=x", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    (b"<prompt>x</prompt>", {"Content-Type": "application/xml"}, 415, "unsupported_media_type"),
    (b"prompt=x", {"Content-Type": "application/octet-stream"}, 415, "unsupported_media_type"),
])
def test_form_and_content_type_corpus(http, body, headers, status, code):
    _check(http.post(VID, content=body, headers={**AUTH, **headers}), status, code)


@pytest.mark.parametrize("ctype", ["multipart/form-data; boundary=XyZ", "application/x-www-form-urlencoded",
                                   "text/plain", "image/png"])
def test_images_take_json_only(http, ctype):
    _check(http.post(IMG, content=b"prompt=x", headers={**AUTH, "Content-Type": ctype}), 415,
           "unsupported_media_type")


# ---- methods, ids, query parameters -----------------------------------------------------------------------------
@pytest.mark.parametrize("method,path,allow", [
    ("PUT", VID, "GET, POST"),
    ("PATCH", VID, "GET, POST"),
    ("OPTIONS", VID, "GET, POST"),
    ("POST", f"{VID}/{VIDEO_ID}", "GET, DELETE"),
    ("PUT", f"{VID}/{VIDEO_ID}/content", "GET"),
    ("DELETE", "/v1/models", "GET"),
    ("POST", "/health", "GET"),
    ("GET", IMG, "POST"),
])
def test_wrong_methods_list_every_allowed_method(http, method, path, allow):
    r = http.request(method, path, headers=AUTH)
    _check(r, 405, "method_not_allowed")
    assert r.headers["allow"] == allow


@pytest.mark.parametrize("path,status,code", [
    (f"{VID}/nope", 404, "video_not_found"),
    (f"{VID}/{'v' * 5000}", 404, "video_not_found"),
    (f"{VID}/%00", 404, "video_not_found"),
    (f"{VID}/%ED%A0%80", 404, "video_not_found"),
    (f"{VID}/video_{'٠' * 24}", 404, "video_not_found"),
    (f"{VID}/{VIDEO_ID.upper()}", 404, "video_not_found"),
    (f"{VID}/{VIDEO_ID}/content", 404, "video_not_found"),
    (f"{VID}/{VIDEO_ID}/content?variant=../../etc", 404, "video_not_found"),
    (f"/v1/models/{'m' * 3000}", 404, "model_not_found"),
    ("/v1/models/%FF", 404, "model_not_found"),
    (f"{VID}?limit=abc", 400, "invalid_value"),
    (f"{VID}?limit=", 400, "invalid_value"),
    (f"{VID}?limit=1.5", 400, "invalid_value"),
    (f"{VID}?limit=%D9%A4", 400, "invalid_value"),
    (f"{VID}?limit=-1", 400, "invalid_value"),
    (f"{VID}?limit=101", 400, "invalid_value"),
    (f"{VID}?limit={'9' * 5000}", 400, "invalid_value"),
    (f"{VID}?limit=true", 400, "invalid_value"),
    (f"{VID}?order=ASC", 400, "invalid_value"),
    (f"{VID}?order=%00", 400, "invalid_value"),
    (f"{VID}?after=", 400, "invalid_value"),
    (f"{VID}?after=%ED%A0%80", 400, "invalid_value"),
    (f"{VID}?after=img_{'0' * 24}", 400, "invalid_value"),
    (f"/v1/nothing?x={'y' * 4000}", 404, "not_found"),
])
def test_paths_and_queries(http, path, status, code):
    _check(http.get(path, headers=AUTH), status, code)


# ---- lone surrogates already stored by older versions -----------------------------------------------------------
def test_rows_with_lone_surrogates_still_list_and_retrieve(http, srv):
    r = http.post(VID, json={"prompt": "old row", "size": "32x32"}, headers=AUTH)
    assert r.status_code == 200, r.text
    vid = r.json()["id"]
    # what an older version stored for {"prompt": "x\ud800y"}: json.dumps escapes the surrogate
    with sqlite3.connect(srv.settings.db_path, timeout=10) as db:
        spec = json.loads(db.execute("SELECT spec FROM jobs WHERE id = ?", (vid,)).fetchone()[0])
        spec.update(prompt="x\ud800y", negative_prompt="\udfff", user="u\ud83d")
        db.execute("UPDATE jobs SET spec = ? WHERE id = ?", (json.dumps(spec), vid))
    one = http.get(f"{VID}/{vid}", headers=AUTH)
    assert one.status_code == 200, one.text
    assert one.json()["prompt"] == "x\ufffdy"
    listed = http.get(VID, params={"limit": 100}, headers=AUTH)
    assert listed.status_code == 200, listed.text
    assert [v["prompt"] for v in listed.json()["data"] if v["id"] == vid] == ["x\ufffdy"]


# ---- HTTP below the app: raw sockets ----------------------------------------------------------------------------
def _raw(srv, data: bytes, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """Send raw bytes, read one response (status, headers, body); fails instead of hanging."""
    u = urlsplit(srv.url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, f"connection closed without a response: {buf!r}"
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        while len(body) < int(headers.get("content-length", 0)):
            chunk = s.recv(65536)
            assert chunk, "connection closed mid-body"
            body += chunk
        return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("content_length", [b"abc", b"-1", b"1e3", b"10, 20"])
def test_unparseable_content_length_gets_openai_error(srv, content_length):
    req = (b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode() +
           b"\r\nContent-Type: application/json\r\nContent-Length: " + content_length + b"\r\n\r\n{}")
    status, headers, body = _raw(srv, req)
    assert status == 400
    assert headers["content-type"] == "application/json"
    err = json.loads(body)["error"]
    assert err["code"] == "invalid_http_request" and "Content-Length" in err["message"]


def test_body_never_sent_times_out_with_408(srv):
    req = (b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode() +
           b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":")
    t0 = time.monotonic()
    status, headers, body = _raw(srv, req, timeout=BODY_TIMEOUT_S + 10)
    assert status == 408 and BODY_TIMEOUT_S * 0.9 <= time.monotonic() - t0 < BODY_TIMEOUT_S + 5
    assert json.loads(body)["error"]["code"] == "body_timeout"
    assert headers.get("connection") == "close"


def test_body_dripped_slowly_times_out_with_408(srv):
    """The deadline covers the whole body, so a client cannot hold the request by sending a byte at a time."""
    u = urlsplit(srv.url)
    with socket.create_connection((u.hostname, u.port), timeout=BODY_TIMEOUT_S + 10) as s:
        s.sendall(b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        t0 = time.monotonic()
        s.settimeout(BODY_TIMEOUT_S / 4)
        answer = b""
        while time.monotonic() - t0 < BODY_TIMEOUT_S + 5 and not answer:
            try:
                s.sendall(b" ")
                answer = s.recv(65536)
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - t0 < BODY_TIMEOUT_S + 2


def test_body_timeout_does_not_cut_slow_downloads_or_waits(http):
    """The deadline is on the request body only: a request whose body is complete may take longer."""
    t0 = time.monotonic()
    r = http.post(IMG, json={"prompt": "x", "size": "128x128", "num_inference_steps": 30}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert time.monotonic() - t0 > BODY_TIMEOUT_S  # the simulated steps took longer than the body deadline


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _api_count(http, code: str, endpoint: str = "POST /v1/videos") -> float:
    text = http.get("/metrics", headers=AUTH).text
    m = re.search(r'genserve_api_requests_total\{(?=[^}]*code="%s")(?=[^}]*endpoint="%s")[^}]*\} (\S+)'
                  % (code, re.escape(endpoint)), text)
    return float(m.group(1)) if m else 0.0


def test_client_disconnect_mid_upload_is_499_without_traceback(http, srv):
    records = _Records()
    loggers = [logging.getLogger(n) for n in ("uvicorn", "genserve")]
    for lg in loggers:
        lg.addHandler(records)
    before_500, before_499 = _api_count(http, "500"), _api_count(http, "499")
    u = urlsplit(srv.url)
    try:
        for _ in range(5):
            with socket.create_connection((u.hostname, u.port), timeout=5) as s:
                s.sendall(b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode() +
                          b"\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"prompt\": \"ab")
                time.sleep(0.05)  # the app is reading the body when the client goes
        deadline = time.monotonic() + 10
        while _api_count(http, "499") < before_499 + 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for lg in loggers:
            lg.removeHandler(records)
    assert _api_count(http, "499") == before_499 + 5
    assert _api_count(http, "500") == before_500
    assert not [r for r in records.records if r.exc_info or r.levelno >= logging.WARNING], \
        [r.getMessage() for r in records.records]
    assert sum(len(r.getMessage()) for r in records.records) < 5 * 200  # at most a short line each


# ---- the OpenAPI document matches what the server answers --------------------------------------------------------
def test_openapi_lists_the_errors_the_server_sends(http):
    doc = http.get("/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], (method, path)
    ops = {(m, p): op for p, o in doc["paths"].items() for m, op in o.items()}
    assert {"400", "401", "404", "408", "413", "415", "429", "503"} <= set(ops[("post", IMG)]["responses"])
    assert {"400", "401", "404", "408", "413", "415", "429", "503"} <= set(ops[("post", VID)]["responses"])
    assert {"400", "401"} <= set(ops[("get", VID)]["responses"])
    assert {"401", "404", "409"} <= set(ops[("get", VID + "/{video_id}/content")]["responses"])
    err = ops[("get", VID)]["responses"]["400"]["content"]["application/json"]["schema"]
    assert err == {"$ref": "#/components/schemas/Error"}
    assert "text/plain" in ops[("get", "/metrics")]["responses"]["200"]["content"]


def test_openapi_request_schema_refuses_what_the_server_refuses(http, srv):
    doc = http.get("/openapi.json").json()
    body = doc["paths"][IMG]["post"]["requestBody"]["content"]["application/json"]["schema"]
    props = body["properties"]
    s = srv.settings
    assert props["prompt"]["minLength"] == 1 and props["prompt"]["maxLength"] == s.max_prompt_chars
    assert (props["n"]["minimum"], props["n"]["maximum"]) == (1, s.max_n)
    assert (props["num_inference_steps"]["minimum"], props["num_inference_steps"]["maximum"]) == (1, s.max_steps)
    assert (props["seed"]["minimum"], props["seed"]["maximum"]) == (0, 2**32 - 1)
    assert "partial_images" not in props and body["additionalProperties"] is False
    video = doc["paths"][VID]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "input_reference" not in video and video["num_frames"]["maximum"] == s.max_frames
    limit = [p for p in doc["paths"][VID]["get"]["parameters"] if p["name"] == "limit"][0]["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, s.max_list_limit)
