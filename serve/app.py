"""`ddpm-serve`'s HTTP service (FastAPI on uvicorn) around one ContinuousBatcher.

    POST /v1/generate   JSON: ddpm-run's parameter and layout names and defaults, plus "format":
                        png (the sheet with its record, byte-identical to ddpm-run's), atlas (JSON: the
                        sheet as base64 PNG + its TexturePacker atlas), zip (one PNG per sprite), npy (x_0)
    GET  /v1/models     classes, shapes, backend, precision, provenance, limits
    GET  /healthz       the process and its batcher thread are alive
    GET  /readyz        the model is loaded and requests are admitted (503 while draining)
    GET  /metrics       Prometheus text: queue depth, rows per UNet call, UNet call latency, requests by status

Bad input → 422 {"error": <the one-line reason ddpm-run gives>} (a body over 64 KiB: 413); a full
queue → 429 with Retry-After; a passed deadline (X-Timeout header in seconds, else the server's
--timeout) → 504; a client that disconnects is cancelled and its rows freed at the next tick. `Service`
holds the handlers so the Ray Serve deployment (serve/ray_serve.py) answers with the same code.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import json
import math
import os
import tempfile
import zipfile
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from io import BytesIO
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from ddpm_edge.runtime import __version__
from ddpm_edge.runtime.assets.outputs import Batch, SheetLayout, Targets, write_outputs
from ddpm_edge.runtime.batching import ContinuousBatcher, DeadlineExceeded, Overloaded, ShuttingDown
from ddpm_edge.runtime.errors import Cancelled, DdpmEdgeError
from ddpm_edge.runtime.params import GenerationParams
from ddpm_edge.runtime.solvers import SAMPLERS

FORMATS = {"png": "image/png", "atlas": "application/json", "zip": "application/zip",
           "npy": "application/octet-stream"}
PARAM_NAMES = tuple(f.name for f in fields(GenerationParams))
LAYOUT_NAMES = tuple(f.name for f in fields(SheetLayout))
DEFAULT_TIMEOUT = 300.0      # seconds a request may take, unless its X-Timeout header asks for less
DISCONNECT_POLL = 0.1        # seconds between checks that the client is still there
ZIP_DATE = (1980, 1, 1, 0, 0, 0)   # fixed, so the same request gives the same zip bytes
MAX_BODY = 1 << 16           # bytes of a request body: settings are a few hundred


@dataclass(frozen=True)
class GenerateRequest:
    params: GenerationParams
    layout: SheetLayout
    format: str = "png"


def parse_request(body) -> GenerateRequest:
    """A JSON object of ddpm-run settings → validated params, layout and format (DdpmEdgeError otherwise).
    Absent or null keys take ddpm-run's defaults."""
    if not isinstance(body, dict):
        raise DdpmEdgeError("the request body must be a JSON object of generation settings")
    unknown = set(body) - set(PARAM_NAMES) - set(LAYOUT_NAMES) - {"format"}
    if unknown:
        raise DdpmEdgeError(f"unknown settings: {', '.join(sorted(unknown))}")
    given = {k: v for k, v in body.items() if v is not None}
    fmt = given.pop("format", "png")
    if fmt not in FORMATS:
        raise DdpmEdgeError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    params = GenerationParams(**{k: v for k, v in given.items() if k in PARAM_NAMES})
    layout = SheetLayout(**{k: v for k, v in given.items() if k in LAYOUT_NAMES})
    return GenerateRequest(params, layout, fmt)


def encode(batch: Batch, layout: SheetLayout, fmt: str) -> bytes:
    """The response body, written by the same code as ddpm-run's outputs (runtime/assets/outputs.py)."""
    with tempfile.TemporaryDirectory(prefix="ddpm-serve-") as folder:
        folder = Path(folder)
        if fmt in ("png", "npy"):
            sheet = folder / f"sprites.{fmt}"
            write_outputs(batch, Targets(sheet=sheet), layout)
            return sheet.read_bytes()
        if fmt == "atlas":
            sheet = folder / "sprites.png"
            write_outputs(batch, Targets(sheet=sheet, atlas=True), layout)
            return json.dumps({"image": base64.b64encode(sheet.read_bytes()).decode("ascii"),
                               "atlas": json.loads(sheet.with_suffix(".json").read_text(encoding="utf-8")),
                               "record": batch.record(layout.fixed(len(batch.sprites)))}).encode()
        each = folder / "sprites"
        write_outputs(batch, Targets(each=each), layout)
        out = BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:   # PNGs are compressed already
            for name in batch.names:
                archive.writestr(zipfile.ZipInfo(f"{name}.png", ZIP_DATE), (each / f"{name}.png").read_bytes())
        return out.getvalue()


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _prometheus_histogram(name: str, help_text: str, histogram) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    cumulative = 0
    for bound, count in zip((*histogram.buckets, math.inf), histogram.counts):
        cumulative += count
        lines.append(f'{name}_bucket{{le="{"+Inf" if bound == math.inf else bound}"}} {cumulative}')
    lines += [f"{name}_sum {histogram.sum:.6f}", f"{name}_count {histogram.count}"]
    return lines


class Service:
    """The HTTP handlers over one batcher (starlette Request → Response), shared by FastAPI and Ray Serve."""

    def __init__(self, batcher: ContinuousBatcher, timeout: float = DEFAULT_TIMEOUT):
        self.batcher, self.timeout = batcher, timeout
        self.statuses: collections.Counter = collections.Counter()
        self.draining = False

    def _deadline(self, header: str | None) -> float:
        if header is None:
            return self.timeout
        try:
            seconds = float(header)
        except ValueError:
            raise DdpmEdgeError(f"X-Timeout must be a number of seconds, got {header!r}") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise DdpmEdgeError(f"X-Timeout must be a positive number of seconds, got {header!r}")
        return min(seconds, self.timeout)

    async def generate(self, request: Request) -> Response:
        response = await self._generate(request)
        self.statuses[response.status_code] += 1
        return response

    async def _generate(self, request: Request) -> Response:
        raw = b""
        async for chunk in request.stream():   # read at most MAX_BODY bytes, whatever Content-Length says
            raw += chunk
            if len(raw) > MAX_BODY:
                return _error(413, f"the request body exceeds {MAX_BODY} bytes")
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            return _error(422, "the request body is not valid JSON")
        try:
            req = parse_request(body)
            req.layout.check_size(req.params.n, *self.batcher.generator.spec.sample_shape[1:])   # before sampling
            job = self.batcher.submit(req.params, self._deadline(request.headers.get("x-timeout")))
        except Overloaded as e:
            return _error(429, str(e), {"Retry-After": str(e.retry_after)})
        except ShuttingDown as e:
            return _error(503, str(e), {"Retry-After": "5"})
        except DdpmEdgeError as e:
            return _error(422, str(e))
        result = asyncio.wrap_future(job.future)
        watcher = asyncio.ensure_future(self._wait_disconnect(request))
        try:
            await asyncio.wait({result, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:   # the server cancelled the handler (Ray Serve does on disconnect)
            job.cancel()
            raise
        finally:
            watcher.cancel()
        if not result.done():   # the client left: free its rows at the next tick
            job.cancel()
            result.add_done_callback(lambda f: f.exception())   # retrieve it: no "never retrieved" log
            return _error(499, "client disconnected")
        try:
            batch = result.result()
        except DeadlineExceeded as e:
            return _error(504, str(e))
        except Cancelled:
            return _error(503, "the server is shutting down", {"Retry-After": "5"})
        except DdpmEdgeError as e:
            return _error(500, str(e))
        try:
            body = await run_in_threadpool(encode, batch, req.layout, req.format)
        except DdpmEdgeError as e:    # e.g. a sheet over the size limit: the request's layout, not the server
            return _error(422, str(e))
        except Exception as e:        # never a traceback to the client, never a stopped service
            return _error(500, f"writing the {req.format} failed: {type(e).__name__}: {e}")
        p = batch.params
        return Response(body, media_type=FORMATS[req.format],
                        headers={"X-Seed": str(p.seed), "X-Steps": str(p.steps), "X-Sampler": p.sampler})

    @staticmethod
    async def _wait_disconnect(request: Request) -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(DISCONNECT_POLL)

    def models(self) -> dict:
        generator = self.batcher.generator
        spec, unet = generator.spec, generator.unet
        return {"models": [{
            "id": Path(generator.model_path or "unet").stem, "file": generator.model_path,
            "sha256": generator.model_sha256, "classes": list(spec.context_names),
            "sample_shape": list(spec.sample_shape), "n_cfeat": spec.n_cfeat,
            "schedule": spec.schedule.as_dict(), "samplers": list(SAMPLERS),
            "backend": getattr(unet, "backend", "onnxruntime"), "precision": getattr(unet, "precision", "fp32"),
            "version": __version__,
            "limits": {"max_n": self.batcher.max_n, "max_batch_rows": self.batcher.max_batch,
                       "max_queued_rows": self.batcher.max_queued_rows, "timeout_s": self.timeout},
            "formats": list(FORMATS)}]}

    def healthy(self) -> bool:
        return self.batcher._worker.is_alive()

    def ready(self) -> bool:
        return self.healthy() and self.batcher.running and not self.draining

    def metrics(self) -> str:
        b = self.batcher
        lines = ["# HELP ddpm_server_info This server process (replicas of a Ray Serve deployment differ by pid).",
                 "# TYPE ddpm_server_info gauge", f'ddpm_server_info{{pid="{os.getpid()}"}} 1',
                 "# HELP ddpm_queue_rows UNet rows of admitted requests not yet finished (waiting or running).",
                 "# TYPE ddpm_queue_rows gauge", f"ddpm_queue_rows {b.queued_rows}",
                 "# HELP ddpm_queue_requests Admitted requests not yet finished.",
                 "# TYPE ddpm_queue_requests gauge", f"ddpm_queue_requests {b.queued_requests}"]
        lines += _prometheus_histogram("ddpm_batch_rows", "Rows per UNet call (all requests in the tick).",
                                       b.batch_rows)
        lines += _prometheus_histogram("ddpm_unet_call_seconds", "Latency of one UNet call.", b.unet_seconds)
        lines += ["# HELP ddpm_requests_total POST /v1/generate responses by HTTP status.",
                  "# TYPE ddpm_requests_total counter"]
        lines += [f'ddpm_requests_total{{status="{s}"}} {n}' for s, n in sorted(self.statuses.items())]
        lines += ["# HELP ddpm_batcher_finished_total Requests that left the batcher, by outcome.",
                  "# TYPE ddpm_batcher_finished_total counter"]
        lines += [f'ddpm_batcher_finished_total{{outcome="{o}"}} {n}' for o, n in sorted(b.finished.items())]
        return "\n".join(lines) + "\n"

    async def route(self, request: Request) -> Response:
        """Dispatch by method and path (Ray Serve's ingress calls this; FastAPI has its own routes)."""
        path, method = request.url.path.rstrip("/") or "/", request.method
        if path.endswith("/v1/generate") and method == "POST":
            return await self.generate(request)
        if path.endswith("/v1/models"):
            return JSONResponse(self.models())
        if path.endswith("/metrics"):
            return PlainTextResponse(self.metrics(), media_type="text/plain; version=0.0.4")
        if path.endswith("/healthz"):
            return PlainTextResponse("ok") if self.healthy() else PlainTextResponse("batcher stopped", 503)
        if path.endswith("/readyz"):
            return PlainTextResponse("ready") if self.ready() else PlainTextResponse("not ready", 503)
        return _error(404, f"no route {method} {path}")


def _openapi_body() -> dict:
    """The request body's schema for /docs: ddpm-run's settings (validated by GenerationParams/SheetLayout)."""
    kinds = {"n": "integer", "steps": "integer", "seed": "integer", "tolerance": "integer", "cols": "integer",
             "scale": "integer", "padding": "integer", "guidance": "number", "eta": "number"}
    properties = {name: {"type": kinds.get(name, "string"), "nullable": True}
                  for name in (*PARAM_NAMES, *LAYOUT_NAMES)}
    properties["context"] = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "number"}}],
                             "nullable": True}
    properties["format"] = {"type": "string", "enum": list(FORMATS), "default": "png"}
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "additionalProperties": False,
        "example": {"n": 4, "sampler": "ddim", "seed": 1, "context": "food", "format": "png"}}}}}}


def create_app(batcher: ContinuousBatcher, timeout: float = DEFAULT_TIMEOUT, drain: float = 30.0) -> FastAPI:
    """The FastAPI app over `batcher`; its shutdown stops admitting, drains up to `drain` s, then cancels."""
    service = Service(batcher, timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.draining = True
        await run_in_threadpool(batcher.close, True, drain)

    app = FastAPI(title="ddpm-serve", version=__version__, lifespan=lifespan,
                  description="Sprites from the course's diffusion model; every user's denoising steps share "
                              "UNet calls (continuous batching).")
    app.state.service = service

    @app.post("/v1/generate", openapi_extra=_openapi_body(),
              responses={200: {"content": {m: {} for m in FORMATS.values()}}, 422: {}, 429: {}, 504: {}})
    async def generate(request: Request) -> Response:
        """Generate sprites; the body takes ddpm-run's settings plus format (png|atlas|zip|npy)."""
        return await service.generate(request)

    for path in ("/v1/models", "/healthz", "/readyz", "/metrics"):
        app.add_api_route(path, service.route, methods=["GET"], include_in_schema=path == "/v1/models")
    return app
