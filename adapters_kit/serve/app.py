"""The HTTP API over a :class:`~adapters_kit.runs.pool.Pool`: predict, list / hot-load / unload adapters, health,
Prometheus metrics, the OpenAPI schema at ``/docs`` and a playground page at ``/``.

Every error is a JSON body ``{"error": "<one line>"}`` with a 4xx / 5xx status; no request can stop the server.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from adapters_kit.errors import UserError, first_line
from adapters_kit.runs.pool import AdapterExists, Pool, UnknownAdapter
from adapters_kit.runs.pool import Request as PoolRequest
from adapters_kit.serve import inputs
from adapters_kit.serve.batcher import Batcher, QueueFull
from adapters_kit.serve.metrics import Metrics
from adapters_kit.serve.options import ServeSettings
from adapters_kit.serve.paths import run_path

log = logging.getLogger("adapters_kit.serve")


class Parameters(BaseModel):
    top_k: int = Field(1, ge=1, le=1000, description="labels per input (classification)")


class PredictBody(BaseModel):
    adapter: str = Field(description="name of a loaded adapter (GET /v1/adapters)")
    inputs: list[Any] = Field(description="texts; [text, text_pair] pairs; lists of words (token tasks); or "
                                          "base64 image / audio files")
    parameters: Parameters = Parameters()


class LoadBody(BaseModel):
    path: str = Field(description="a run folder, relative to --runs-dir")
    name: str | None = Field(None, description="adapter name (default: the folder's name)")


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(e: RequestValidationError | ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))


class BodyLimit:
    """Refuse a request body over ``limit`` bytes with 413, by its Content-Length or while it streams in."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(scope, receive, send)
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send):
        mb = self.limit / 2**20
        await error(413, f"the request body is larger than {mb:g} MB (--max-request-mb)")(scope, receive, send)


class _TooLarge(Exception):
    pass


@dataclass
class Server:
    """What the routes share: the pool, its one model thread, the batcher, the metrics and the settings."""

    pool: Pool
    settings: ServeSettings
    api_key: str | None
    executor: ThreadPoolExecutor
    batcher: Batcher
    metrics: Metrics

    async def in_model_thread(self, fn, *args):
        """Run ``fn`` in the model thread, after the batches already queued there."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


def _server(request: Request) -> Server:
    return request.app.state.server


def create_app(pool: Pool, settings: ServeSettings, api_key: str | None = None) -> FastAPI:
    """The app serving ``pool`` (already loaded). ``api_key``: required by POST / DELETE /v1/adapters."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
    metrics = Metrics()
    batcher = Batcher(pool.predict, executor, max_batch_size=settings.max_batch_size,
                      max_wait_s=settings.max_wait_ms / 1000, max_queue=settings.max_queue,
                      on_batch=metrics.batch_size.observe, on_depth=metrics.queue_depth.set)
    metrics.adapters.set(len(pool.served))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()  # uvicorn ends the lifespan after in-flight requests were answered (SIGTERM drains)
        executor.shutdown(wait=True)

    app = FastAPI(title="adapters_kit", summary="Run folders served over shared base models", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=int(settings.max_request_mb * 2**20))
    app.state.server = Server(pool, settings, api_key, executor, batcher, metrics)
    app.add_exception_handler(RequestValidationError, lambda r, e: error(422, _validation_message(e)))
    app.add_exception_handler(HTTPException, lambda r, e: error(e.status_code, str(e.detail),
                                                                getattr(e, "headers", None)))
    app.include_router(router)
    return app


def require_key(request: Request) -> None:
    """The API key, if the server has one: ``X-API-Key`` or ``Authorization: Bearer``, compared in constant time."""
    key = _server(request).api_key
    if key is None:
        return
    given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise HTTPException(401, "a valid API key is required (X-API-Key or Authorization: Bearer)",
                            headers={"WWW-Authenticate": "Bearer"})


router = APIRouter()
MULTIPART = {"type": "object", "required": ["adapter", "files"], "properties": {
    "adapter": {"type": "string"}, "top_k": {"type": "integer"},
    "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def playground():
    return resources.files("adapters_kit.serve").joinpath("playground.html").read_text()


@router.get("/health")
async def health(request: Request):
    """200 once the server answers: every adapter given at start was loaded before it bound its port."""
    return {"status": "ok", "adapters": len(_server(request).pool.served)}


@router.get("/v1/adapters")
async def adapters(request: Request):
    """Every loaded adapter: name, task, modality, labels, method, base model, trainable parameters."""
    return {"adapters": [s.describe() for s in list(_server(request).pool.served.values())]}


@router.post("/v1/predict", openapi_extra={"requestBody": {"required": True, "content": {
    "application/json": {"schema": PredictBody.model_json_schema(ref_template="#/components/schemas/{model}")},
    "multipart/form-data": {"schema": MULTIPART}}}})
async def predict(request: Request):
    """What ``load(run)(inputs, top_k)`` answers for the named adapter, one prediction per input."""
    server = _server(request)
    start, name, status = time.perf_counter(), "", 500
    try:
        name, items, keys, top_k = await _read_predict(request, server.pool, server.settings)
        answer = await asyncio.wait_for(server.batcher.submit(PoolRequest(name, items, keys, top_k)),
                                        server.settings.timeout_s)
        status = 200
        return {"adapter": name, "predictions": answer}
    except Exception as e:  # noqa: BLE001 - every failure becomes its status and one line
        status, message, headers = _failure(e, server.settings)
        return error(status, message, headers)
    finally:
        adapter = name if name in server.pool.served else "unknown"
        server.metrics.requests.labels(adapter=adapter, status=str(status)).inc()
        server.metrics.latency.observe(time.perf_counter() - start)


def _failure(e: Exception, settings: ServeSettings) -> tuple[int, str, dict | None]:
    """(status, one-line message, headers) for what went wrong with a prediction request."""
    if isinstance(e, _Answer):
        return e.status, e.message, e.headers
    if isinstance(e, QueueFull):
        return 503, str(e), {"Retry-After": "1"}
    if isinstance(e, asyncio.TimeoutError):
        return 504, f"no answer within {settings.timeout_s:g} s (--timeout-s)", None
    if isinstance(e, UnknownAdapter):  # unloaded while the request waited
        return 404, str(e), None
    if isinstance(e, (UserError, inputs.InputError)):
        return 422, first_line(e, 300), None
    log.exception("prediction failed")
    return 500, f"the model failed on this request ({first_line(e, 300)})", None


@router.post("/v1/adapters", status_code=201, dependencies=[Depends(require_key)])
async def load_adapter(body: LoadBody, request: Request):
    """Hot-load a run folder from ``--runs-dir``."""
    server = _server(request)
    if server.settings.runs_dir is None:
        return error(403, "hot-loading is off; start the server with --runs-dir")
    try:
        path = run_path(Path(server.settings.runs_dir), body.path)
        served = await server.in_model_thread(server.pool.load, path, body.name)
    except PermissionError as e:
        return error(403, str(e))
    except FileNotFoundError as e:
        return error(404, str(e))
    except AdapterExists as e:
        return error(409, str(e))
    except UserError as e:
        return error(422, first_line(e, 300))
    server.metrics.adapters.set(len(server.pool.served))
    log.info("loaded adapter %s from %s", served.name, path)
    return served.describe()


@router.delete("/v1/adapters/{name}", dependencies=[Depends(require_key)])
async def unload_adapter(name: str, request: Request):
    """Unload an adapter; its backbone is freed once no adapter uses it."""
    server = _server(request)
    try:
        await server.in_model_thread(server.pool.unload, name)
    except UnknownAdapter as e:
        return error(404, str(e))
    server.metrics.adapters.set(len(server.pool.served))
    log.info("unloaded adapter %s", name)
    return {"unloaded": name}


@router.get("/metrics")
async def prometheus(request: Request):
    """Prometheus text format: requests by adapter and status, latency, batch sizes, queue depth, adapters."""
    metrics = _server(request).metrics
    return Response(metrics.render(), media_type=metrics.content_type)


class _Answer(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


async def _read_predict(request: Request, pool: Pool, settings: ServeSettings) -> tuple[str, list, list, int]:
    """(adapter, items, keys, top_k) from a JSON body or a multipart upload; an ``_Answer`` for a bad request."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=settings.max_inputs + 1)
        name = str(form.get("adapter") or "")
        try:
            top_k = int(form.get("top_k") or 1)
        except ValueError:
            raise _Answer(422, "top_k must be an integer") from None
        files = [await f.read() for f in form.getlist("files") if hasattr(f, "read")]
        served = _served(pool, name)
        items, keys = await run_in_threadpool(inputs.parse_files, served, files, settings.max_inputs)
    else:
        try:
            body = PredictBody.model_validate(json.loads(await request.body()))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Answer(400, "the request body is not valid JSON") from None
        except ValidationError as e:
            raise _Answer(422, _validation_message(e)) from None
        name, top_k = body.adapter, body.parameters.top_k
        served = _served(pool, name)
        items, keys = await run_in_threadpool(inputs.parse, served, body.inputs, settings.max_inputs)
    if top_k < 1:
        raise _Answer(422, "top_k must be at least 1")
    return name, items, keys, top_k


def _served(pool: Pool, name: str):
    if not name:
        raise _Answer(422, "adapter: give the name of a loaded adapter (GET /v1/adapters)")
    try:
        return pool.get(name)
    except UnknownAdapter as e:
        raise _Answer(404, str(e)) from None


def read_api_key(var: str | None) -> str | None:
    """The key in environment variable ``var``; a one-line error when it is named but unset or empty."""
    if var is None:
        return None
    key = os.environ.get(var, "")
    if not key:
        raise UserError(f"--api-key-env {var}: the environment variable is unset or empty; export the key in it")
    return key
