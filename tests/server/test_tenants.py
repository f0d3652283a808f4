"""Tenants: API keys name a tenant, every job, file and listing is scoped to it; signed, expiring image URLs;
keys files; the job store's migration. A live server over the simulated engine, the official openai client."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import openai
import pytest
from server_helpers import API_KEY, live_server, make_settings, openai_client, sim_engine, wait_video
from typer.testing import CliRunner

from genserve.cli import app
from genserve.server.signing import SECRET_NAME, sign

KEYS = {"key-alice-1": "alice", "key-alice-2": "alice", "key-bob-1": "bob"}
NO_SUCH = "video_" + "0" * 24


@pytest.fixture(scope="module")
def tenants(tmp_path_factory):
    d = tmp_path_factory.mktemp("tenants")
    settings = make_settings(d, api_keys=KEYS, engine_kind="sim")
    with live_server(sim_engine(d), settings) as srv:
        srv.settings = settings
        yield srv


def _client(srv, key):
    return openai_client(srv, api_key=key)


def _error(r: httpx.Response) -> dict:
    return r.json()["error"]


def _with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    q.update(changes)
    q = {k: v for k, v in q.items() if v is not None}
    return urlunsplit(parts._replace(query=urlencode(q)))


def test_videos_are_private_to_their_tenant(tenants):
    alice, alice2, bob = (_client(tenants, k) for k in KEYS)
    v = alice.videos.create(prompt="alice's clip", size="32x32", extra_body={"num_inference_steps": 2})
    mine = bob.videos.create(prompt="bob's clip", size="32x32", extra_body={"num_inference_steps": 2})
    wait_video(alice, v.id)
    assert alice2.videos.retrieve(v.id).id == v.id  # one tenant, several keys
    assert alice.videos.download_content(v.id).content[4:8] == b"ftyp"
    # bob sees exactly what an unknown id shows: same status, code and message
    with pytest.raises(openai.NotFoundError) as unknown:
        bob.videos.retrieve(NO_SUCH)
    for call in (bob.videos.retrieve, bob.videos.download_content, bob.videos.delete):
        with pytest.raises(openai.NotFoundError) as e:
            call(v.id)
        assert e.value.code == "video_not_found"
        assert e.value.body["message"].replace(v.id, NO_SUCH) == unknown.value.body["message"]
    assert v.id not in [x.id for x in bob.videos.list()]
    assert mine.id in [x.id for x in bob.videos.list()]
    assert [x.id for x in alice.videos.list()].count(v.id) == 1 and mine.id not in [x.id for x in alice.videos.list()]
    assert alice.videos.retrieve(v.id).status == "completed"  # bob's DELETE did nothing


def test_after_cursor_of_another_tenant_is_unknown(tenants):
    alice, bob = _client(tenants, "key-alice-1"), _client(tenants, "key-bob-1")
    a = alice.videos.create(prompt="cursor", size="32x32", extra_body={"num_inference_steps": 2})
    bob.videos.create(prompt="bob", size="32x32", extra_body={"num_inference_steps": 2})
    errors = []
    for after in (a.id, NO_SUCH):
        with pytest.raises(openai.BadRequestError) as e:
            bob.videos.list(after=after)
        errors.append((e.value.code, e.value.body["param"], e.value.body["message"].replace(after, "ID")))
    assert errors[0] == errors[1] and errors[0][:2] == ("invalid_value", "after")
    assert [x.id for x in alice.videos.list(after=a.id, order="asc")] == []  # alice's own cursor works


def test_signed_image_url(tenants):
    alice = _client(tenants, "key-alice-1")
    r = alice.images.generate(prompt="a lighthouse", size="32x32", response_format="url")
    url = r.data[0].url
    q = parse_qs(urlsplit(url).query)
    expires = int(q["expires"][0])
    ttl = tenants.settings.image_url_ttl_s
    assert time.time() + ttl - 5 <= expires <= time.time() + ttl
    assert r.model_extra["genserve"]["url_expires_at"] == expires
    got = httpx.get(url, timeout=10)  # no key needed
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert got.content.startswith(b"\x89PNG")
    # unsigned, tampered signature, tampered expiry: 403, OpenAI-shaped
    cases = {"missing_signature": _with_query(url, expires=None, signature=None),
             "invalid_signature": _with_query(url, signature="0" * 64)}
    for code, bad in cases.items():
        b = httpx.get(bad, timeout=10)
        assert b.status_code == 403 and _error(b)["code"] == code and _error(b)["type"] == "permission_error"
    b = httpx.get(_with_query(url, expires=str(expires + 3600)), timeout=10)
    assert b.status_code == 403 and _error(b)["code"] == "invalid_signature"
    b = httpx.get(_with_query(url, expires="soon"), timeout=10)
    assert b.status_code == 403
    # another id under this signature
    other = alice.images.generate(prompt="another", size="32x32", response_format="url").data[0].url
    swapped = url.replace(urlsplit(url).path, urlsplit(other).path)
    assert httpx.get(swapped, timeout=10).status_code == 403


def test_expired_image_url(tenants):
    alice = _client(tenants, "key-alice-1")
    url = alice.images.generate(prompt="old news", size="32x32", response_format="url").data[0].url
    image_id = urlsplit(url).path.split("/")[-2]
    secret = (tenants.settings.data_dir / SECRET_NAME).read_bytes()
    past = int(time.time()) - 1
    expired = _with_query(url, expires=str(past), signature=sign(secret, image_id, past, "alice"))
    b = httpx.get(expired, timeout=10)
    assert b.status_code == 403 and _error(b)["code"] == "url_expired"
    # a signature minted for another tenant does not open alice's image
    later = int(time.time()) + 60
    assert httpx.get(_with_query(url, expires=str(later), signature=sign(secret, image_id, later, "bob")),
                     timeout=10).status_code == 403
    assert httpx.get(_with_query(url, expires=str(later), signature=sign(secret, image_id, later, "alice")),
                     timeout=10).status_code == 200


def test_image_content_with_the_owners_key(tenants):
    alice = _client(tenants, "key-alice-1")
    url = alice.images.generate(prompt="owned", size="32x32", response_format="url").data[0].url
    plain = _with_query(url, expires=None, signature=None)
    assert httpx.get(plain, headers={"Authorization": "Bearer key-alice-2"}, timeout=10).status_code == 200
    b = httpx.get(plain, headers={"Authorization": "Bearer key-bob-1"}, timeout=10)
    assert b.status_code == 404 and _error(b)["code"] == "image_not_found"
    b = httpx.get(plain, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert b.status_code == 401


def test_metrics_need_a_key_health_does_not(tenants):
    assert httpx.get(tenants.url + "/metrics", timeout=10).status_code == 401
    assert httpx.get(tenants.url + "/metrics", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    r = httpx.get(tenants.url + "/metrics", headers={"Authorization": "Bearer key-bob-1"}, timeout=10)
    assert r.status_code == 200 and "genserve_requests_total" in r.text
    assert httpx.get(tenants.url + "/health", timeout=10).status_code == 200


def test_signed_urls_survive_a_restart_and_the_secret_is_private(tmp_path):
    settings = make_settings(tmp_path, api_keys=KEYS, engine_kind="sim")
    with live_server(sim_engine(tmp_path), settings) as srv:
        url = _client(srv, "key-bob-1").images.generate(prompt="kept", size="32x32",
                                                         response_format="url").data[0].url
        port = srv.url
    secret = tmp_path / SECRET_NAME
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    with live_server(sim_engine(tmp_path), make_settings(tmp_path, api_keys=KEYS, engine_kind="sim")) as srv2:
        got = httpx.get(url.replace(port, srv2.url), timeout=10)
        assert got.status_code == 200 and got.content.startswith(b"\x89PNG")


def test_single_key_and_no_key_are_one_tenant(tmp_path):
    # --api-key / GENSERVE_API_KEY: tenant "default"; next to a keys file its jobs stay its own
    settings = make_settings(tmp_path / "a", api_key=API_KEY, api_keys={"key-bob-1": "bob"}, engine_kind="sim")
    with live_server(sim_engine(tmp_path / "a"), settings) as srv:
        main, bob = _client(srv, API_KEY), _client(srv, "key-bob-1")
        v = main.videos.create(prompt="x", size="32x32", extra_body={"num_inference_steps": 2})
        assert v.id in [x.id for x in main.videos.list()] and v.id not in [x.id for x in bob.videos.list()]
    settings = make_settings(tmp_path / "b", api_key=None, engine_kind="sim")
    with live_server(sim_engine(tmp_path / "b"), settings) as srv:
        one, two = _client(srv, "anything"), _client(srv, "something else")
        v = one.videos.create(prompt="x", size="32x32", extra_body={"num_inference_steps": 2})
        assert two.videos.retrieve(v.id).id == v.id
        url = one.images.generate(prompt="y", size="32x32", response_format="url").data[0].url
        assert httpx.get(url, timeout=10).status_code == 200


V1_DDL = """
CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    status TEXT NOT NULL, spec TEXT NOT NULL, created_at REAL NOT NULL, deadline_at REAL,
    steps_done INTEGER NOT NULL DEFAULT 0, steps_total INTEGER NOT NULL DEFAULT 0, progress INTEGER NOT NULL DEFAULT 0,
    completed_at REAL, error_code TEXT, error TEXT, output TEXT, met_deadline INTEGER,
    attempts INTEGER NOT NULL DEFAULT 1);
CREATE INDEX jobs_status ON jobs(status);
CREATE INDEX jobs_kind_seq ON jobs(kind, seq);
PRAGMA user_version=1;
"""


def test_version1_store_migrates_to_the_default_tenant(tmp_path):
    import json

    db = tmp_path / "jobs.sqlite3"
    con = sqlite3.connect(db)
    con.executescript(V1_DDL)
    spec = {"kind": "video", "model": "tiny-wan", "prompt": "from before", "width": 32, "height": 32, "frames": 9,
            "steps": 2, "seed": 1, "guidance_scale": None, "negative_prompt": None, "deadline_s": None,
            "sigma": None, "seconds": "1"}
    old = "video_" + "ab" * 12
    con.execute("INSERT INTO jobs (id, kind, status, spec, created_at, completed_at, progress) "
                "VALUES (?, 'video', 'completed', ?, ?, ?, 100)", (old, json.dumps(spec), time.time() - 5, time.time()))
    con.commit()
    con.close()
    settings = make_settings(tmp_path, api_key=API_KEY, api_keys={"key-bob-1": "bob"}, engine_kind="sim")
    with live_server(sim_engine(tmp_path), settings) as srv:
        main, bob = _client(srv, API_KEY), _client(srv, "key-bob-1")
        assert main.videos.retrieve(old).status == "completed"
        assert [x.id for x in main.videos.list()] == [old]
        assert bob.videos.list().data == []
        with pytest.raises(openai.NotFoundError):
            bob.videos.retrieve(old)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    assert con.execute("SELECT tenant FROM jobs WHERE id = ?", (old,)).fetchone()[0] == "default"
    con.close()


@pytest.mark.parametrize("text,message", [
    ("alice:k1\nbob:k1\n", "already listed"),
    ("alice:\n", "blank"),
    ("alice k1\n", "expected 'tenant:key'"),
    ("alice:k 1\n", "whitespace"),
    (":k1\n", "tenant name"),
    ("# only a comment\n\n", "has no keys"),
])
def test_serve_refuses_a_bad_keys_file(tmp_path, monkeypatch, text, message):
    monkeypatch.delenv("GENSERVE_API_KEY", raising=False)
    path = tmp_path / "keys"
    path.write_text(text)
    r = CliRunner().invoke(app, ["serve", "--engine", "sim", "--keys-file", str(path), "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and r.output.startswith("error: ") and message in r.output, r.output


def test_serve_keys_file_counts_for_a_public_bind(tmp_path, monkeypatch):
    monkeypatch.delenv("GENSERVE_API_KEY", raising=False)
    r = CliRunner().invoke(app, ["serve", "--engine", "sim", "--keys-file", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "cannot read the keys file" in r.output
    path = tmp_path / "keys"
    path.write_text("# tenant:key\nalice:key-a\nbob:key-b\n")
    # the keys pass the bind check; the bogus profile then stops it before anything listens
    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--engine", "sim", "--keys-file", str(path),
                                 "--profile", str(tmp_path / "no-such-profile.json")])
    assert r.exit_code == 2 and "without an API key" not in r.output and "profile" in r.output.lower(), r.output


def test_settings_refuse_bad_keys(tmp_path):
    from genserve.core.errors import ValidationError
    from genserve.server import ServerSettings

    for kw, message in (({"api_keys": {"k1": "no spaces please"}}, "tenant name"),
                        ({"api_keys": {"k 1": "alice"}}, "whitespace"),
                        ({"api_keys": {"k1": "alice"}, "api_key": "k1"}, "also a key of tenant 'alice'")):
        with pytest.raises(ValidationError, match=message):
            make_settings(tmp_path, **kw)
