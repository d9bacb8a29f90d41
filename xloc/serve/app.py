"""The localization service: per-environment reference store, few-shot calibration and locate API, map page.

Authorisation (``X-API-Key`` header; keys are random 256-bit tokens stored as SHA-256 hashes):

| caller | may |
|---|---|
| admin key (``XLOC_ADMIN_KEY``) | create environments (the reply carries the new key, shown once), list, delete |
| an environment's key | everything under ``/environments/{its id}``: read, upload, calibrate, locate, pin, delete |
| anything else | nothing: 401 without a key, 403 with a key that does not fit |

Every bad request gets a 4xx with a message that names the field, row or AP; model files are safetensors.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ValidationError

from xloc.data.fingerprints import Fingerprints
from xloc.errors import XlocError
from xloc.features.drift_score import drift_score
from xloc.methods.knn import signal_features
from xloc.serve.calibration import (
    EnvironmentInfo,
    ServedModel,
    calibrate,
    calibration_spec,
    load_version,
    recalibrate,
    stale_map,
)
from xloc.serve.db import Database, array_bytes, bytes_array
from xloc.serve.map_page import MAP_CSP, map_html
from xloc.serve.schemas import (
    MAX_ROWS,
    RSS_RANGE_DBM,
    CalibrationRequest,
    EnvironmentCreate,
    FingerprintBatch,
    LocateRequest,
    PinRequest,
    _Measurements,
)

__all__ = ["create_app", "hash_key"]

LATEST_LOCATED = 500
#: Located fingerprints kept per site for its drift score, and how many the score needs.
RECENT_SCANS = 300
MIN_DRIFT_SCANS = 20
#: Largest floor-plan image [bytes], and the image types accepted with the bytes each must start with.
FLOOR_PLAN_MAX_BYTES = 4 * 2**20
FLOOR_PLAN_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff", "image/webp": b"RIFF"}
#: Request bodies up to this size are parsed and answered on the event loop: a hop to a worker thread (with the GIL
#: handoff it brings) costs more than they do. Larger ones are parsed and answered in the thread pool, one at a time:
#: pydantic's parser holds the GIL for a whole body (0.18 s for 11 MiB), so parses running side by side would hand
#: the GIL to each other while the event loop waits (four 11 MiB uploads stalled /health 1.1 s; one at a time, the
#: loop gets the GIL between two parses, and at most one large body is expanded in memory).
INLINE_BODY_BYTES = 32 * 2**10
_LARGE_BODY = threading.Lock()


def _validated(model: type[BaseModel], raw: bytes) -> Any:
    """``raw`` JSON as ``model`` (pydantic's own JSON parser), or the 422 FastAPI gives for a bad body."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


async def _answer(raw: bytes, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` on the event loop for a small body, in the thread pool for a large one."""
    if len(raw) <= INLINE_BODY_BYTES:
        return fn(*args)
    return await run_in_threadpool(_one_large_body_at_a_time, fn, *args)


def _one_large_body_at_a_time(fn: Any, *args: Any) -> Any:
    with _LARGE_BODY:
        return fn(*args)


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of an endpoint that reads its body itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class _BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with 413, whether or not Content-Length is sent.

    The body is read here, under the cap, before the app sees it: an oversized chunked body is a 413, not a parse
    error, and the app never holds more than ``max_bytes`` of one request."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = JSONResponse({"detail": f"request body over {self.max_bytes} bytes; split it into batches"},
                               status_code=413)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await too_big(scope, receive, send)
            return
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body, delivered = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())  # after the body: wait for the client's disconnect

        await self.app(scope, replay, send)


#: Environment ids as the service makes them (and nothing that could break out of a page or a path).
ENV_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                     (b"x-frame-options", b"DENY")]
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


class _SecurityHeaders:
    """ASGI middleware: nosniff, no referrer and no framing on every response; a deny-all Content-Security-Policy
    on every response that does not bring its own (the map page pins its script and style by hash)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                headers += [h for h in _SECURITY_HEADERS if h[0] not in names]
                docs = scope.get("path", "") in ("/docs", "/redoc", "/docs/oauth2-redirect")
                if _API_CSP[0] not in names and not docs:  # FastAPI's docs pages load their own scripts
                    headers.append(_API_CSP)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class _LeaseLost(Exception):
    """This process no longer holds the job's lease: another one declared it failed; leave its state alone."""


class Service:
    """State behind the app: the store, model folders, registered base models and the calibration worker.

    Jobs carry a lease: the process that runs one renews it every ``job_lease_s / 3`` seconds; a job whose lease
    ran out (its process died) is marked failed by any live process's next heartbeat. Updates of a job are
    conditional on still holding its lease and on the job not being final, so a final state never changes."""

    def __init__(self, db_url: str, models_dir: Path, base_models: dict[str, Path], admin_key: str | None,
                 *, job_lease_s: float = 30.0, keep_versions: int = 5) -> None:
        if job_lease_s <= 0 or keep_versions < 1:
            raise XlocError(f"job_lease_s must be > 0 and keep_versions >= 1, got {job_lease_s}, {keep_versions}")
        self.db = Database(db_url)
        self.models_dir = Path(models_dir)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.base_models = dict(base_models)
        self.admin_hash = hash_key(admin_key) if admin_key else None
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xloc-calibration")
        self._served: dict[tuple[str, int], ServedModel] = {}
        self._info: dict[str, EnvironmentInfo] = {}  # a site's description never changes once created
        self._lock = threading.Lock()
        self.located: dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(
            maxlen=LATEST_LOCATED))
        # the latest located fingerprints per site, for its drift score (per process: each scores what it served)
        self.recent: dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(
            maxlen=RECENT_SCANS))
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.job_lease_s, self.keep_versions = float(job_lease_s), int(keep_versions)
        self.expire_leases()
        self._stop = threading.Event()
        threading.Thread(target=self._heartbeat, name="xloc-job-lease", daemon=True).start()

    # --- job leases ----------------------------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        while not self._stop.wait(self.job_lease_s / 3):
            try:
                with self.db.transaction() as tx:
                    tx.execute("UPDATE jobs SET lease_until = ? WHERE lease_owner = ? AND status IN "
                               "('queued', 'running')", (time.time() + self.job_lease_s, self.instance))
                self.expire_leases()
            except Exception:  # a store hiccup: the next beat retries; the lease has slack for two misses
                continue

    def expire_leases(self) -> int:
        """Mark failed every unfinished job whose lease ran out (its server process stopped); returns how many."""
        now = time.time()
        with self.db.transaction() as tx:
            return tx.execute("UPDATE jobs SET status = 'failed', message = 'its server process stopped before "
                              "it finished (lease expired)', updated_at = ? WHERE status IN ('queued', 'running') "
                              "AND (lease_until IS NULL OR lease_until < ?)", (now, now))

    def close(self) -> None:
        self._stop.set()
        self.worker.shutdown(wait=False, cancel_futures=True)

    # --- auth ----------------------------------------------------------------------------------------------------
    def is_admin(self, key: str | None) -> bool:
        return bool(key and self.admin_hash and hmac.compare_digest(hash_key(key), self.admin_hash))

    def environment_of_key(self, key: str | None) -> str | None:
        if not key:
            return None
        rows = self.db.query("SELECT id FROM environments WHERE key_hash = ?", (hash_key(key),))
        return rows[0][0] if rows else None

    # --- environments --------------------------------------------------------------------------------------------
    def info(self, env_id: str) -> EnvironmentInfo:
        cached = self._info.get(env_id)
        if cached is not None:
            return cached
        rows = self.db.query("SELECT id, name, kind, frequency_hz, ap_ids, ap_positions_m, bounds_m, shape "
                             "FROM environments WHERE id = ?", (env_id,))
        if not rows:
            raise HTTPException(404, f"no environment {env_id!r}")
        i, name, kind, freq, aps, ap_pos, bounds, shape = rows[0]
        info = EnvironmentInfo(i, name, kind, freq, tuple(json.loads(aps)),
                               None if ap_pos is None else np.array(json.loads(ap_pos), dtype=np.float64),
                               None if bounds is None else tuple(json.loads(bounds)), tuple(json.loads(shape)))
        if len(self._info) > 4096:
            self._info.pop(next(iter(self._info)))
        self._info[env_id] = info
        return info

    def forget(self, env_id: str) -> None:
        """Drop a deleted site's cached description and models."""
        self._info.pop(env_id, None)
        with self._lock:
            for key in [k for k in self._served if k[0] == env_id]:
                del self._served[key]

    def references(self, env_id: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.db.query("SELECT positions, measurements FROM batches WHERE environment_id = ? AND purpose = "
                             "'survey' ORDER BY created_at, batch_id", (env_id,))
        if not rows:
            return np.zeros((0, 2)), np.zeros((0,))
        return (np.concatenate([bytes_array(p) for p, _ in rows]),
                np.concatenate([bytes_array(m) for _, m in rows]))

    def batch(self, env_id: str, batch_id: str) -> tuple[str, np.ndarray, np.ndarray]:
        """(purpose, positions, measurements) of one uploaded batch, or a 404/422."""
        rows = self.db.query("SELECT purpose, positions, measurements FROM batches WHERE environment_id = ? AND "
                             "batch_id = ?", (env_id, batch_id))
        if not rows:
            raise HTTPException(422, f"environment {env_id!r} has no batch {batch_id!r}")
        purpose, pos, meas = rows[0]
        return purpose, bytes_array(pos), bytes_array(meas)

    def stale(self, env_id: str, version: int) -> Fingerprints:
        """The site's stale survey as version ``version`` sees it (its radio map, or the survey batches)."""
        rows = self.db.query("SELECT path FROM models WHERE environment_id = ? AND version = ?", (env_id, version))
        if not rows:
            raise HTTPException(409, f"environment {env_id!r} has no model version {version}")
        return stale_map(self.models_dir / rows[0][0], self.info(env_id), self.references(env_id))

    def measurements(self, env: EnvironmentInfo, body: _Measurements) -> np.ndarray:
        """The body's fingerprints as the environment's array, or a 422 naming what is wrong."""
        if env.kind == "rss":
            if body.rss_dbm is None:
                raise HTTPException(422, f"environment {env.id!r} holds RSS: send rss_dbm")
            columns = body.ap_ids or list(env.ap_ids)
            unknown = [a for a in columns if a not in env.ap_ids]
            if unknown:
                raise HTTPException(422, f"AP ids {unknown[:5]} are not in environment {env.id!r} (it has "
                                         f"{len(env.ap_ids)} APs, e.g. {list(env.ap_ids[:3])})")
            if len(set(columns)) != len(columns):
                raise HTTPException(422, "ap_ids holds duplicates")
            rows = body.rss_dbm
            bad = next((i for i, r in enumerate(rows) if len(r) != len(columns)), None)
            if bad is not None:
                raise HTTPException(422, f"rss_dbm row {bad} has {len(rows[bad])} values; ap_ids has {len(columns)}")
            given = np.array(rows, dtype=np.float64)  # None (not heard) becomes NaN
            lo, hi = RSS_RANGE_DBM
            outside = np.argwhere(np.isfinite(given) & ((given < lo) | (given > hi)))
            if len(outside):
                r, c = outside[0]
                raise HTTPException(422, f"rss_dbm row {r}, AP {columns[c]!r}: {given[r, c]} is not an RSS in dBm "
                                         f"({lo:g} to {hi:g}); send null for not heard")
            if np.isinf(given).any():
                raise HTTPException(422, "rss_dbm holds infinite values; send null for not heard")
            out = np.full((len(rows), len(env.ap_ids)), np.nan, dtype=np.float32)
            out[:, [env.ap_ids.index(a) for a in columns]] = given
            return out
        if body.csi_real is None or body.csi_imag is None:
            raise HTTPException(422, f"environment {env.id!r} holds CSI: send csi_real and csi_imag")
        try:
            real = np.asarray(body.csi_real, dtype=np.float32)
            imag = np.asarray(body.csi_imag, dtype=np.float32)
        except ValueError:
            raise HTTPException(422, "csi_real / csi_imag must be regular nested number arrays") from None
        want = (real.shape[0], *env.shape)
        if real.shape != want or imag.shape != want:
            raise HTTPException(422, f"CSI must be (n, bs, antennas, subcarriers) = {want}, got {real.shape} and "
                                     f"{imag.shape}")
        if not (np.isfinite(real).all() and np.isfinite(imag).all()):
            raise HTTPException(422, "CSI holds NaN or infinite values")
        return (real + 1j * imag).astype(np.complex64)

    # --- models --------------------------------------------------------------------------------------------------
    def serving_version(self, env_id: str) -> int | None:
        rows = self.db.query("SELECT pinned_version, (SELECT MAX(version) FROM models WHERE environment_id = ?) "
                             "FROM environments WHERE id = ?", (env_id, env_id))
        if not rows:
            return None
        pinned, latest = rows[0]
        if pinned is not None:
            return int(pinned)
        return None if latest is None else int(latest)

    def served(self, env_id: str, version: int) -> ServedModel:
        key = (env_id, version)
        with self._lock:
            if key not in self._served:
                rows = self.db.query("SELECT path FROM models WHERE environment_id = ? AND version = ?", key)
                if not rows:
                    raise HTTPException(404, f"environment {env_id!r} has no model version {version}")
                if len(self._served) > 64:
                    self._served.pop(next(iter(self._served)))
                self._served[key] = load_version(self.models_dir / rows[0][0])
            return self._served[key]

    def _update_job(self, tx: Any, job_id: str, **fields: Any) -> None:
        """Update an unfinished job this process holds; _LeaseLost if another process already declared it failed."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        n = tx.execute(f"UPDATE jobs SET {sets}, updated_at = ? WHERE id = ? AND lease_owner = ? AND status IN "
                       "('queued', 'running')", (*fields.values(), time.time(), job_id, self.instance))
        if n != 1:
            raise _LeaseLost(job_id)

    def run_job(self, job_id: str, env_id: str, request: CalibrationRequest) -> None:
        def update(progress: float, message: str, status: str = "running") -> None:
            with self.db.transaction() as tx:
                self._update_job(tx, job_id, status=status, progress=progress, message=message)

        folder = f"{env_id}/{job_id}"
        try:
            update(0.0, "started")
            env = self.info(env_id)
            from_version = None
            if request.recalibration_batch is not None:
                from_version = self.serving_version(env_id)
                if from_version is None:
                    raise XlocError("no version serves yet: calibrate the site before recalibrating it")
                _, positions, meas = self.batch(env_id, request.recalibration_batch)
                summary = recalibrate(request.method, env, self.stale(env_id, from_version), positions, meas,
                                      self.models_dir / folder, progress=lambda f, m: update(0.9 * f, m))
                summary["from_version"] = from_version
            else:
                positions, meas = self.references(env_id)
                base = None
                if request.base_model is not None:
                    base = (request.base_model, self.base_models[request.base_model])
                summary = calibrate(request.method, env, positions, meas, self.models_dir / folder, base_model=base,
                                    steps=request.steps, progress=lambda f, m: update(0.9 * f, m))
            with self.db.transaction() as tx:
                version = int(tx.fetch("SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE environment_id = ?",
                                       (env_id,))[0][0])
                self._update_job(tx, job_id, status="succeeded", progress=1.0, message=f"version {version} ready",
                                 version=version)
                tx.execute("INSERT INTO models (environment_id, version, method, path, n_references, info, "
                           "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (env_id, version, request.method, folder, len(positions), json.dumps(summary),
                            time.time()))
                if from_version is not None:  # a pinned version hands its pin to its recalibration, now ready
                    tx.execute("UPDATE environments SET pinned_version = ? WHERE id = ? AND pinned_version = ?",
                               (version, env_id, from_version))
                pruned = self._prune_versions(tx, env_id)
            for old in pruned:
                shutil.rmtree(self.models_dir / old, ignore_errors=True)
        except _LeaseLost:  # another process declared this job failed: its state stays final, nothing registered
            shutil.rmtree(self.models_dir / folder, ignore_errors=True)
        except Exception as exc:  # the job reports it; the previous version keeps serving
            shutil.rmtree(self.models_dir / folder, ignore_errors=True)
            message = str(exc) if isinstance(exc, XlocError | HTTPException) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, HTTPException):
                message = str(exc.detail)
            try:
                update(0.0, self.without_paths(message), "failed")
            except Exception:  # the environment may have been deleted meanwhile, or the lease lost
                pass

    def _prune_versions(self, tx: Any, env_id: str) -> list[str]:
        """Drop all but the newest ``keep_versions`` versions (never the pinned one); their folders to delete."""
        pinned = tx.fetch("SELECT pinned_version FROM environments WHERE id = ?", (env_id,))
        keep_pinned = pinned[0][0] if pinned else None
        rows = tx.fetch("SELECT version, path FROM models WHERE environment_id = ? ORDER BY version DESC", (env_id,))
        old = [(v, path) for v, path in rows[self.keep_versions:] if v != keep_pinned]
        for v, _ in old:
            tx.execute("DELETE FROM models WHERE environment_id = ? AND version = ?", (env_id, v))
        with self._lock:
            for v, _ in old:
                self._served.pop((env_id, int(v)), None)
        return [path for _, path in old]

    def without_paths(self, message: str) -> str:
        """``message`` with the server's folders replaced by what a site may see: base model names, 'models/'."""
        for name, path in sorted(self.base_models.items(), key=lambda kv: -len(str(kv[1]))):
            message = message.replace(str(Path(path).resolve()), f"<base model {name}>")
            message = message.replace(str(path), f"<base model {name}>")
        return message.replace(str(self.models_dir.resolve()), "models").replace(str(self.models_dir), "models")


def _key(request: Request) -> str | None:
    return request.headers.get("x-api-key")


#: Environment variable carrying ``create_app``'s settings (JSON) to the processes of ``xloc serve --workers N``.
CONFIG_ENV = "XLOC_SERVE_CONFIG"


def app_from_env() -> FastAPI:
    """The app of one worker process of ``xloc serve --workers N`` (settings from :data:`CONFIG_ENV`, the admin
    key from ``XLOC_ADMIN_KEY``)."""
    config = json.loads(os.environ[CONFIG_ENV])
    config["base_models"] = {k: Path(v) for k, v in config.get("base_models", {}).items()}
    return create_app(**config, admin_key=os.environ.get("XLOC_ADMIN_KEY"))


def create_app(db_url: str, models_dir: str | Path, *, base_models: dict[str, Path] | None = None,
               admin_key: str | None = None, max_request_bytes: int = 16 * 2**20, job_lease_s: float = 30.0,
               keep_versions: int = 5) -> FastAPI:
    """The FastAPI app over the store at ``db_url`` (SQLite path or ``postgresql://`` URL). Several processes may
    serve one store and models folder: jobs are leased (``job_lease_s``), and each environment keeps its newest
    ``keep_versions`` model versions (plus the pinned one)."""
    for name, path in (base_models or {}).items():
        if not Path(path).is_dir():
            raise XlocError(f"base model {name!r}: {path} is not a model folder")
    service = Service(db_url, Path(models_dir), base_models or {}, admin_key, job_lease_s=job_lease_s,
                      keep_versions=keep_versions)
    app = FastAPI(title="xloc localization service", version="1",
                  description="Per-environment reference store, few-shot calibration and locate API.")
    app.state.service = service
    app.add_middleware(_BodyLimit, max_bytes=max_request_bytes)
    app.add_middleware(_SecurityHeaders)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            if err.get("type") == "json_invalid":
                parts.append("the request body is not valid JSON")
                continue
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    @app.exception_handler(XlocError)
    async def _xloc_error(_request: Request, exc: XlocError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    # The dependencies are coroutines: they run on the event loop, without a hop to a worker thread per request.
    async def admin(request: Request) -> None:
        key = _key(request)
        if not key:
            raise HTTPException(401, "send the admin key in the X-API-Key header")
        if service.admin_hash is None:
            raise HTTPException(403, "no admin key is configured (set XLOC_ADMIN_KEY when starting the server)")
        if not service.is_admin(key):
            raise HTTPException(403, "this key may not manage environments")

    async def owner(env_id: str, request: Request) -> str:
        key = _key(request)
        if not key:
            raise HTTPException(401, "send the environment's key in the X-API-Key header")
        if service.environment_of_key(key) != env_id:
            raise HTTPException(403, f"this key may not access environment {env_id!r}")
        return env_id

    async def owner_or_admin(env_id: str, request: Request) -> str:
        if service.is_admin(_key(request)):
            if not service.db.query("SELECT 1 FROM environments WHERE id = ?", (env_id,)):
                raise HTTPException(404, f"no environment {env_id!r}")
            return env_id
        return await owner(env_id, request)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "store": service.db.dialect, "schema_version": service.db.schema_version()}

    @app.post("/environments", status_code=201, dependencies=[Depends(admin)])
    def create_environment(body: EnvironmentCreate) -> dict[str, Any]:
        env_id = uuid.uuid4().hex[:12]
        key = secrets.token_urlsafe(32)
        shape = list(body.csi_shape) if body.kind == "csi" and body.csi_shape else [len(body.ap_ids)]
        with service.db.transaction() as tx:
            tx.execute("INSERT INTO environments (id, name, kind, frequency_hz, ap_ids, ap_positions_m, bounds_m, "
                       "shape, key_hash, pinned_version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                       (env_id, body.name, body.kind, body.frequency_hz, json.dumps(body.ap_ids),
                        None if body.ap_positions_m is None else json.dumps(body.ap_positions_m),
                        None if body.bounds_m is None else json.dumps(list(body.bounds_m)), json.dumps(shape),
                        hash_key(key), time.time()))
        return {"id": env_id, "api_key": key, "name": body.name, "kind": body.kind}

    @app.get("/environments", dependencies=[Depends(admin)])
    def list_environments() -> list[dict[str, Any]]:
        rows = service.db.query("SELECT id, name, kind FROM environments ORDER BY created_at")
        return [{"id": i, "name": n, "kind": k} for i, n, k in rows]

    @app.get("/environments/{env_id}")
    def get_environment(env_id: str = Depends(owner)) -> dict[str, Any]:
        env = service.info(env_id)
        counts = dict.fromkeys(("survey", "recalibration"), (0, 0))
        for purpose, n_batches, n_rows in service.db.query(
                "SELECT purpose, COUNT(*), COALESCE(SUM(n), 0) FROM batches WHERE environment_id = ? GROUP BY purpose",
                (env_id,)):
            counts[purpose] = (int(n_batches), int(n_rows))
        return {"id": env.id, "name": env.name, "kind": env.kind, "frequency_hz": env.frequency_hz,
                "ap_ids": list(env.ap_ids), "bounds_m": env.bounds_m, "measurement_shape": list(env.shape),
                "batches": counts["survey"][0], "fingerprints": counts["survey"][1],
                "recalibration_batches": counts["recalibration"][0],
                "recalibration_fingerprints": counts["recalibration"][1],
                "serving_version": service.serving_version(env_id)}

    @app.delete("/environments/{env_id}", status_code=204)
    def delete_environment(env_id: str = Depends(owner_or_admin)) -> Response:
        with service.db.transaction() as tx:
            for table in ("jobs", "models", "batches", "floor_plans"):
                tx.execute(f"DELETE FROM {table} WHERE environment_id = ?", (env_id,))
            tx.execute("DELETE FROM environments WHERE id = ?", (env_id,))
        shutil.rmtree(service.models_dir / env_id, ignore_errors=True)
        service.located.pop(env_id, None)
        service.recent.pop(env_id, None)
        service.forget(env_id)
        return Response(status_code=204)

    @app.post("/environments/{env_id}/fingerprints", status_code=201, openapi_extra=_json_body(FingerprintBatch))
    async def upload(request: Request, response: Response, env_id: str = Depends(owner)) -> dict[str, Any]:
        raw = await request.body()
        return await _answer(raw, store_batch, env_id, raw, response)

    def store_batch(env_id: str, raw: bytes, response: Response) -> dict[str, Any]:
        body = _validated(FingerprintBatch, raw)
        env = service.info(env_id)
        meas = service.measurements(env, body)
        pos = np.asarray(body.positions_m, dtype=np.float64)
        if len(pos) != len(meas):
            raise HTTPException(422, f"{len(pos)} positions for {len(meas)} fingerprints")
        if not np.isfinite(pos).all():
            raise HTTPException(422, "positions_m holds NaN or infinite values")
        if env.bounds_m is not None:
            x0, x1, y0, y1 = env.bounds_m
            out = np.flatnonzero((pos[:, 0] < x0) | (pos[:, 0] > x1) | (pos[:, 1] < y0) | (pos[:, 1] > y1))
            if len(out):
                raise HTTPException(422, f"positions_m row {out[0]} {pos[out[0]].tolist()} lies outside the "
                                         f"environment's bounds_m {list(env.bounds_m)} (metres)")
        # the purpose is part of the content (survey batches keep the digest they always had)
        marker = b"" if body.purpose == "survey" else body.purpose.encode()
        digest = hashlib.sha256(marker + array_bytes(pos) + array_bytes(meas)).hexdigest()
        with service.db.transaction() as tx:
            old = tx.fetch("SELECT digest, n FROM batches WHERE environment_id = ? AND batch_id = ?",
                           (env_id, body.batch_id))
            if old:
                if old[0][0] != digest:
                    raise HTTPException(409, f"batch {body.batch_id!r} was already stored with other content")
                response.status_code = 200
                return {"batch_id": body.batch_id, "n": int(old[0][1]), "created": False}
            tx.execute("INSERT INTO batches (environment_id, batch_id, n, digest, positions, measurements, "
                       "created_at, purpose) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (env_id, body.batch_id, len(pos), digest, array_bytes(pos), array_bytes(meas), time.time(),
                        body.purpose))
        return {"batch_id": body.batch_id, "n": len(pos), "created": True, "purpose": body.purpose}

    @app.post("/environments/{env_id}/calibrations", status_code=202)
    def start_calibration(body: CalibrationRequest, env_id: str = Depends(owner)) -> dict[str, Any]:
        env = service.info(env_id)
        recalibration = body.recalibration_batch is not None
        try:
            calibration_spec(body.method, env.kind, body.base_model, list(service.base_models), recalibration)
        except XlocError as exc:
            raise HTTPException(422, str(exc)) from None
        if recalibration:
            rows = service.db.query("SELECT purpose FROM batches WHERE environment_id = ? AND batch_id = ?",
                                    (env_id, body.recalibration_batch))  # the purpose only, not the arrays
            if not rows:
                raise HTTPException(422, f"environment {env_id!r} has no batch {body.recalibration_batch!r}")
            if rows[0][0] != "recalibration":
                raise HTTPException(422, f"batch {body.recalibration_batch!r} is part of the survey; upload the fresh "
                                         "labelled points with purpose 'recalibration'")
            if service.serving_version(env_id) is None:
                raise HTTPException(409, f"environment {env_id!r} has no version to recalibrate: calibrate it first")
        if body.base_model is not None and body.base_model not in service.base_models:
            raise HTTPException(422, f"no base model {body.base_model!r}; registered: {sorted(service.base_models)}")
        job_id = uuid.uuid4().hex[:12]
        service.expire_leases()
        now = time.time()
        with service.db.transaction() as tx:
            active = tx.fetch("SELECT id FROM jobs WHERE environment_id = ? AND status IN ('queued', 'running')",
                              (env_id,))
            if active:  # one calibration per site at a time: no site can fill the queue in front of the others
                raise HTTPException(409, f"calibration job {active[0][0]!r} of this environment has not finished; "
                                         "wait for it (GET .../jobs/{job_id}) before starting another")
            tx.execute("INSERT INTO jobs (id, environment_id, method, request, status, progress, message, version, "
                       "created_at, updated_at, lease_owner, lease_until) VALUES (?, ?, ?, ?, 'queued', 0.0, "
                       "'queued', NULL, ?, ?, ?, ?)", (job_id, env_id, body.method, body.model_dump_json(), now, now,
                                                       service.instance, now + service.job_lease_s))
        service.worker.submit(service.run_job, job_id, env_id, body)
        return {"job_id": job_id, "status": "queued"}

    @app.get("/environments/{env_id}/jobs/{job_id}")
    def job_status(job_id: str, env_id: str = Depends(owner)) -> dict[str, Any]:
        # no write here: clients poll this; every process's heartbeat expires dead leases every job_lease_s / 3
        rows = service.db.query("SELECT method, status, progress, message, version, created_at, updated_at FROM jobs "
                                "WHERE id = ? AND environment_id = ?", (job_id, env_id))
        if not rows:
            raise HTTPException(404, f"environment {env_id!r} has no job {job_id!r}")
        method, status, progress, message, version, created, updated = rows[0]
        return {"job_id": job_id, "method": method, "status": status, "progress": progress, "message": message,
                "version": version, "created_at": created, "updated_at": updated}

    @app.get("/environments/{env_id}/models")
    def list_models(env_id: str = Depends(owner)) -> dict[str, Any]:
        rows = service.db.query("SELECT version, method, n_references, info, created_at FROM models "
                                "WHERE environment_id = ? ORDER BY version", (env_id,))
        return {"serving_version": service.serving_version(env_id),
                "versions": [{"version": v, "method": m, "references": n, "info": json.loads(i), "created_at": c}
                             for v, m, n, i, c in rows]}

    @app.put("/environments/{env_id}/pin")
    def pin(body: PinRequest, env_id: str = Depends(owner)) -> dict[str, Any]:
        if body.version is not None and not service.db.query(
                "SELECT 1 FROM models WHERE environment_id = ? AND version = ?", (env_id, body.version)):
            raise HTTPException(404, f"environment {env_id!r} has no model version {body.version}")
        with service.db.transaction() as tx:
            tx.execute("UPDATE environments SET pinned_version = ? WHERE id = ?", (body.version, env_id))
        return {"pinned_version": body.version, "serving_version": service.serving_version(env_id)}

    @app.post("/environments/{env_id}/locate", openapi_extra=_json_body(LocateRequest))
    async def locate(request: Request, env_id: str = Depends(owner)) -> dict[str, Any]:
        raw = await request.body()
        return await _answer(raw, locate_body, env_id, raw)

    def locate_body(env_id: str, raw: bytes) -> JSONResponse:
        body = _validated(LocateRequest, raw)
        env = service.info(env_id)
        meas = service.measurements(env, body)
        coarse = None
        if body.coarse_positions_m is not None:
            try:
                coarse = np.asarray(body.coarse_positions_m, dtype=np.float64)
            except ValueError:
                raise HTTPException(422, "coarse_positions_m must be an (n, 2) array of metres") from None
            if coarse.shape != (len(meas), 2) or not np.isfinite(coarse).all():
                raise HTTPException(422, f"coarse_positions_m must be finite ({len(meas)}, 2) metres, got "
                                         f"{coarse.shape}")
        version = service.serving_version(env_id)
        if version is None:
            raise HTTPException(409, f"environment {env_id!r} has no model yet: upload fingerprints and start a "
                                     "calibration")
        model = service.served(env_id, version)
        positions, uncertainty = model.locate(meas, coarse)
        now = time.time()
        unc = [None] * len(positions) if uncertainty is None else [float(u) for u in uncertainty]
        service.located[env_id].extend((float(p[0]), float(p[1]), u, now) for p, u in zip(positions, unc,
                                                                                             strict=True))
        service.recent[env_id].extend(meas[-RECENT_SCANS:])
        return JSONResponse({"version": version, "method": model.method,
                             "positions_m": positions.round(4).tolist(), "uncertainty_m": unc})

    @app.get("/environments/{env_id}/drift")
    def drift(env_id: str = Depends(owner)) -> dict[str, Any]:
        """Has the site drifted since the serving version's map? The MMD permutation score of the fingerprints
        this process located lately against that map (xloc.features.drift_score)."""
        version = service.serving_version(env_id)
        if version is None:
            raise HTTPException(409, f"environment {env_id!r} has no model yet: nothing to compare with")
        recent = list(service.recent.get(env_id, ()))
        out: dict[str, Any] = {"version": version, "scans": len(recent), "min_scans": MIN_DRIFT_SCANS}
        if len(recent) < MIN_DRIFT_SCANS:
            return {**out, "z": None, "message": f"{len(recent)} located scans so far; the score needs "
                                                 f"{MIN_DRIFT_SCANS}"}
        env = service.info(env_id)
        stale = service.stale(env_id, version)
        survey, now = (signal_features(np.asarray(a), env.kind).reshape(len(a), -1)
                       for a in (stale.measurements, np.stack(recent)))
        score = drift_score(survey, now, seed=version)
        drifted = score.drifted()
        return {**out, "z": round(score.z, 3), "p_value": score.p_value, "drifted": drifted,
                "mean_shift_db": None if np.isnan(score.mean_shift_db) else round(score.mean_shift_db, 2),
                "aps_gone": [env.ap_ids[i] for i in score.gone] if env.kind == "rss" else [],
                "aps_new": [env.ap_ids[i] for i in score.new] if env.kind == "rss" else [],
                "message": "the site has changed since this version's survey: upload a few fresh labelled points "
                           "(purpose 'recalibration') and recalibrate (method map-correct)" if drifted else
                           "no significant change since this version's survey"}

    @app.get("/environments/{env_id}/map", response_class=HTMLResponse, include_in_schema=False)
    def map_page(env_id: str) -> HTMLResponse:
        # The page holds no data; its script reads the key from the URL fragment (never sent to the server).
        if not ENV_ID.fullmatch(env_id):
            raise HTTPException(404, "no such environment")
        return HTMLResponse(map_html(env_id), headers={"Content-Security-Policy": MAP_CSP})

    @app.put("/environments/{env_id}/floor-plan", openapi_extra={"requestBody": {"required": True, "content": {
        t: {"schema": {"type": "string", "format": "binary"}} for t in FLOOR_PLAN_TYPES}}})
    async def put_floor_plan(request: Request, env_id: str = Depends(owner)) -> dict[str, Any]:
        """The site's floor plan (PNG, JPEG or WebP, at most 4 MiB), drawn stretched over its ``bounds_m``."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in FLOOR_PLAN_TYPES:
            raise HTTPException(415, f"a floor plan is {', '.join(FLOOR_PLAN_TYPES)}; got Content-Type "
                                     f"{content_type or 'none'!r}")
        image = await request.body()
        if len(image) > FLOOR_PLAN_MAX_BYTES:
            raise HTTPException(413, f"the floor plan is {len(image)} bytes; at most {FLOOR_PLAN_MAX_BYTES}")
        magic = FLOOR_PLAN_TYPES[content_type]
        if not image.startswith(magic) or (content_type == "image/webp" and image[8:12] != b"WEBP"):
            raise HTTPException(415, f"the body is not a {content_type} image (its first bytes do not say so)")
        if service.info(env_id).bounds_m is None:
            raise HTTPException(409, f"environment {env_id!r} has no bounds_m: a floor plan is drawn over them")
        now = time.time()
        with service.db.transaction() as tx:
            tx.execute("DELETE FROM floor_plans WHERE environment_id = ?", (env_id,))
            tx.execute("INSERT INTO floor_plans (environment_id, content_type, image, updated_at) "
                       "VALUES (?, ?, ?, ?)", (env_id, content_type, image, now))
        return {"content_type": content_type, "bytes": len(image), "updated_at": now}

    @app.get("/environments/{env_id}/floor-plan", response_class=Response,
             responses={200: {"content": {t: {} for t in FLOOR_PLAN_TYPES}}})
    def get_floor_plan(env_id: str = Depends(owner)) -> Response:
        rows = service.db.query("SELECT content_type, image FROM floor_plans WHERE environment_id = ?", (env_id,))
        if not rows:
            raise HTTPException(404, f"environment {env_id!r} has no floor plan")
        return Response(bytes(rows[0][1]), media_type=rows[0][0], headers={"Cache-Control": "no-store"})

    @app.delete("/environments/{env_id}/floor-plan", status_code=204)
    def delete_floor_plan(env_id: str = Depends(owner)) -> Response:
        with service.db.transaction() as tx:
            tx.execute("DELETE FROM floor_plans WHERE environment_id = ?", (env_id,))
        return Response(status_code=204)

    @app.get("/environments/{env_id}/map-data")
    def map_data(env_id: str = Depends(owner), references: bool = True,
                 max_references: int = Query(2000, ge=0, le=MAX_ROWS)) -> dict[str, Any]:
        """What the map draws. ``references=false`` leaves the reference points out (the page asks for them only
        now and then); at most ``max_references`` of them are sent, evenly subsampled."""
        env = service.info(env_id)
        n_refs = int(service.db.query("SELECT COALESCE(SUM(n), 0) FROM batches WHERE environment_id = ? AND "
                                      "purpose = 'survey'", (env_id,))[0][0])
        refs: list | None = None
        if references:
            positions, _ = service.references(env_id)
            step = max(1, -(-len(positions) // max_references)) if max_references else len(positions) + 1
            refs = positions[::step, :2].round(3).tolist()
        aps = None if env.ap_positions_m is None else env.ap_positions_m[:, :2].tolist()
        plan = service.db.query("SELECT updated_at FROM floor_plans WHERE environment_id = ?", (env_id,))
        pinned = service.db.query("SELECT pinned_version FROM environments WHERE id = ?", (env_id,))[0][0]
        versions = [int(v) for (v,) in service.db.query(
            "SELECT version FROM models WHERE environment_id = ? ORDER BY version", (env_id,))]
        return {"name": env.name, "bounds_m": env.bounds_m, "ap_ids": list(env.ap_ids), "ap_positions_m": aps,
                "n_references": n_refs, "references_m": refs,
                "located": [{"x_m": x, "y_m": y, "uncertainty_m": u, "t": t} for x, y, u, t in
                            list(service.located.get(env_id, ()))[-200:]],
                "serving_version": service.serving_version(env_id), "pinned_version": pinned,
                "versions": versions, "floor_plan_updated_at": plan[0][0] if plan else None}

    return app
