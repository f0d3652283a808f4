"""Durable job store (SQLite in WAL mode) and atomic output files.

One row per engine request: images (one row per generated image) and videos. Rows survive restarts: jobs that
were queued or in progress are re-submitted by the server at start-up, completed outputs stay downloadable.
Output files live in one directory, named `<id>.<ext>` where the id matched `ID_RE`, so no id can name a path
outside it. Every row belongs to a tenant (the API key's); a video deleted while active stays as a `deleted`
tombstone, invisible to the API, until the engine has stopped it (its late output is then removed).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from genserve.server.schemas import JobSpec, valid_id

ACTIVE = ("queued", "in_progress")
TERMINAL = ("completed", "failed", "cancelled")
DELETED = "deleted"
SCHEMA_VERSION = 2  # 2: the tenant column (rows of version 1 belong to tenant "default")

_DDL = """
CREATE TABLE IF NOT EXISTS jobs (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    spec         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    deadline_at  REAL,
    steps_done   INTEGER NOT NULL DEFAULT 0,
    steps_total  INTEGER NOT NULL DEFAULT 0,
    progress     INTEGER NOT NULL DEFAULT 0,
    completed_at REAL,
    error_code   TEXT,
    error        TEXT,
    output       TEXT,
    met_deadline INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 1,
    tenant       TEXT NOT NULL DEFAULT 'default'
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE INDEX IF NOT EXISTS jobs_kind_seq ON jobs(kind, seq);
"""
_TENANT_INDEX = "CREATE INDEX IF NOT EXISTS jobs_tenant_kind_seq ON jobs(tenant, kind, seq)"


@dataclass
class Job:
    seq: int
    id: str
    kind: str
    status: str
    spec: JobSpec
    created_at: float
    deadline_at: float | None
    steps_done: int
    steps_total: int
    progress: int
    completed_at: float | None
    error_code: str | None
    error: str | None
    output: str | None
    met_deadline: bool | None
    attempts: int
    tenant: str = "default"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def _row_to_job(r: sqlite3.Row) -> Job:
    return Job(seq=r["seq"], id=r["id"], kind=r["kind"], status=r["status"],
               spec=JobSpec.from_dict(json.loads(r["spec"])), created_at=r["created_at"],
               deadline_at=r["deadline_at"], steps_done=r["steps_done"], steps_total=r["steps_total"],
               progress=r["progress"], completed_at=r["completed_at"], error_code=r["error_code"], error=r["error"],
               output=r["output"], met_deadline=None if r["met_deadline"] is None else bool(r["met_deadline"]),
               attempts=r["attempts"], tenant=r["tenant"])


class JobStore:
    """Thread-safe (one connection behind a lock; the engine's callback thread and the event loop share it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, SCHEMA_VERSION):
                raise RuntimeError(f"job store {self.path} has schema version {version}; this genserve reads "
                                   f"version {SCHEMA_VERSION}")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _DDL.split(";"):  # not executescript: it would commit the transaction
                    if stmt.strip():
                        self._db.execute(stmt)
                cols = {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)")}
                if "tenant" not in cols:  # a version-1 store: its rows belong to the default tenant
                    self._db.execute("ALTER TABLE jobs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default'")
                self._db.execute(_TENANT_INDEX)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- writes ----------------------------------------------------------------------------------------
    def insert(self, job_id: str, spec: JobSpec, *, created_at: float, deadline_at: float | None,
               steps_total: int, tenant: str = "default") -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, kind, status, spec, created_at, deadline_at, steps_total, tenant) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                (job_id, spec.kind, json.dumps(spec.to_dict()), created_at, deadline_at, steps_total, tenant))

    def insert_many(self, rows: list[tuple[str, JobSpec, float, float | None, int]], tenant: str = "default") -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO jobs (id, kind, status, spec, created_at, deadline_at, steps_total, tenant) "
                    "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                    [(i, s.kind, json.dumps(s.to_dict()), c, d, t, tenant) for i, s, c, d, t in rows])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    _FIELDS = frozenset({"status", "steps_done", "steps_total", "progress", "completed_at", "error_code", "error",
                         "output", "met_deadline", "attempts", "deadline_at"})

    def update(self, job_id: str, **fields) -> None:
        bad = set(fields) - self._FIELDS
        if bad:
            raise KeyError(f"unknown job fields {sorted(bad)}")
        if not fields:
            return
        cols = ", ".join(f"{k} = ?" for k in fields)
        vals = [int(v) if isinstance(v, bool) else v for v in fields.values()]
        with self._lock:  # a tombstone stays one: late engine updates must not bring a deleted job back
            self._db.execute(f"UPDATE jobs SET {cols} WHERE id = ? AND status != 'deleted'", (*vals, job_id))

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def mark_deleted(self, job_id: str) -> None:
        """Hide a job from the API at once (its engine work may still be stopping); see `tombstones`."""
        self.update(job_id, status=DELETED, completed_at=time.time())

    # ---- reads -----------------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(r) if r else None

    def get_owned(self, job_id: str, tenant: str) -> Job | None:
        """The job if `tenant` owns it and it is not deleted: another tenant's job looks like an unknown one."""
        job = self.get(job_id)
        return job if job is not None and job.tenant == tenant and job.status != DELETED else None

    def tombstones(self) -> list[Job]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE status = 'deleted' ORDER BY seq").fetchall()
        return [_row_to_job(r) for r in rows]

    def unfinished(self) -> list[Job]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE status IN ('queued', 'in_progress') ORDER BY seq"
                                    ).fetchall()
        return [_row_to_job(r) for r in rows]

    def page(self, kind: str, limit: int, after: str | None, order: str,
             tenant: str = "default") -> tuple[list[Job], bool]:
        """`tenant`'s jobs of `kind` in creation order (asc) or newest first (desc), after the job `after`.
        Raises KeyError when `after` is not a (visible) job of that kind and tenant."""
        cmp, direction = (">", "ASC") if order == "asc" else ("<", "DESC")
        mine = "kind = ? AND tenant = ? AND status != 'deleted'"
        with self._lock:
            if after is not None:
                r = self._db.execute(f"SELECT seq FROM jobs WHERE id = ? AND {mine}", (after, kind, tenant)
                                     ).fetchone()
                if r is None:
                    raise KeyError(after)
                rows = self._db.execute(
                    f"SELECT * FROM jobs WHERE {mine} AND seq {cmp} ? ORDER BY seq {direction} LIMIT ?",
                    (kind, tenant, r["seq"], limit + 1)).fetchall()
            else:
                rows = self._db.execute(f"SELECT * FROM jobs WHERE {mine} ORDER BY seq {direction} LIMIT ?",
                                        (kind, tenant, limit + 1)).fetchall()
        jobs = [_row_to_job(r) for r in rows]
        return jobs[:limit], len(jobs) > limit

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            rows = self._db.execute("SELECT kind, status, COUNT(*) AS n FROM jobs WHERE status != 'deleted' "
                                    "GROUP BY kind, status").fetchall()
        return {(r["kind"], r["status"]): r["n"] for r in rows}


class OutputDir:
    """The directory of finished outputs. Names are `<id>.<ext>` for ids that pass `valid_id`."""

    EXT = {"image": "png", "video": "mp4"}
    EXTS = ("png", "jpeg", "webp", "mp4")  # images converted to output_format keep their own extension

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, job_id: str, kind: str, ext: str | None = None) -> Path:
        if not valid_id(job_id, kind) or (ext is not None and ext not in self.EXTS):
            raise ValueError(f"invalid job id {job_id!r}")
        return self.root / f"{job_id}.{ext or self.EXT[kind]}"

    def resolve(self, name: str | None) -> Path | None:
        """The path of a stored output name, or None when the name is unsafe or the file is gone."""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            return None
        stem, _, ext = name.partition(".")
        if not valid_id(stem) or ext not in self.EXTS:
            return None
        p = self.root / name
        return p if p.is_file() else None

    def adopt(self, src: str | Path, job_id: str, kind: str) -> str:
        """Put the engine's output file for `job_id` in place atomically; returns its stored name."""
        dst = self.path_for(job_id, kind)
        src = Path(src)
        if src.resolve() == dst:
            return dst.name
        try:
            same_fs = src.stat().st_dev == self.root.stat().st_dev
        except OSError:
            same_fs = False
        if same_fs:
            os.replace(src, dst)  # same file system: moving the engine's file in is one atomic rename
            return dst.name
        with open(src, "rb") as s:
            self._replace(dst, lambda f: shutil.copyfileobj(s, f))
        return dst.name

    def write(self, data: bytes, job_id: str, kind: str, ext: str) -> str:
        """Write `data` as the output of `job_id` with extension `ext` (temporary file, fsync, rename)."""
        dst = self.path_for(job_id, kind, ext)
        self._replace(dst, lambda f: f.write(data))
        return dst.name

    def _replace(self, dst: Path, fill) -> None:
        """fill(f) into a temporary file beside `dst`, fsync, rename over `dst`: readers see all or nothing."""
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=dst.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                fill(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dst)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def remove(self, name: str | None) -> None:
        p = self.resolve(name)
        if p is not None:
            p.unlink(missing_ok=True)

    def sweep_temp(self, older_than_s: float = 0.0) -> None:
        """Remove temporaries left by a crash mid-write."""
        now = time.time()
        for p in self.root.glob(".tmp-*"):
            try:
                if now - p.stat().st_mtime >= older_than_s:
                    p.unlink()
            except OSError:
                pass
