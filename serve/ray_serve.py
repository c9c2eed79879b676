"""The continuous batcher as a Ray Serve deployment: each replica owns one model and one batcher and
answers with the same handlers as ddpm-serve (serve/app.py's Service), so the HTTP interface is the same.

    serve run ddpm_edge.serve.ray_serve:build_app max_batch=64      # one replica, http://127.0.0.1:8000
    serve run serve/ray_serve.yaml                                   # replicas and autoscaling from the file
    serve deploy serve/ray_serve.yaml                                # onto a running cluster (ray start --head)

Ray Serve routes each HTTP request to a replica (replicas, autoscaling on ongoing requests); inside a
replica the batcher folds its concurrent requests into shared UNet calls, so a replica must accept many
requests at once (max_ongoing_requests), not Ray Serve's default handful.
"""
from __future__ import annotations

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from ddpm_edge.runtime.batching import (DEFAULT_MAX_BATCH, DEFAULT_MAX_N, DEFAULT_MAX_QUEUED_ROWS,
                                        ContinuousBatcher)

from .app import DEFAULT_TIMEOUT, Service
from .models import load_generator

MAX_ONGOING = 256   # requests a replica holds at once; beyond the batcher's own limit it answers 429


@serve.deployment(max_ongoing_requests=MAX_ONGOING, ray_actor_options={"num_cpus": 1},
                  graceful_shutdown_timeout_s=30)
class SpriteService:
    def __init__(self, engine: str | None = None, device: str = "cpu", threads: int | None = None,
                 backend: str = "auto", precision: str | None = None, max_batch: int = DEFAULT_MAX_BATCH,
                 max_n: int = DEFAULT_MAX_N, max_queued_rows: int = DEFAULT_MAX_QUEUED_ROWS,
                 timeout: float = DEFAULT_TIMEOUT, parallel: int = 1):
        generator = load_generator(engine, device, threads, backend, precision)
        batcher = ContinuousBatcher(generator, max_batch=max_batch, max_n=max_n, max_queued_rows=max_queued_rows,
                                    parallel=parallel)
        self.service = Service(batcher, timeout)

    async def __call__(self, request: Request) -> Response:
        return await self.service.route(request)

    def check_health(self) -> None:   # Ray Serve restarts a replica whose batcher thread died
        if not self.service.healthy():
            raise RuntimeError("batcher thread stopped")

    def __del__(self):   # replica shutdown: Ray Serve has already drained its requests
        service = getattr(self, "service", None)
        if service is not None:
            service.draining = True
            service.batcher.close(drain=False, timeout=5)


def build_app(args: dict | None = None):
    """`serve run ddpm_edge.serve.ray_serve:build_app key=value …` / the YAML's import_path: the bound
    deployment. Keys: SpriteService's arguments; num_replicas (int or "auto") and autoscaling_config
    (e.g. min_replicas, max_replicas, target_ongoing_requests) pass to Ray Serve."""
    args = dict(args or {})
    options = {k: args.pop(k) for k in ("num_replicas", "autoscaling_config", "ray_actor_options") if k in args}
    for key in ("max_batch", "max_n", "max_queued_rows", "threads", "parallel"):
        if key in args and args[key] is not None:
            args[key] = int(args[key])
    if "timeout" in args:
        args["timeout"] = float(args["timeout"])
    if isinstance(options.get("num_replicas"), str) and options["num_replicas"] != "auto":
        options["num_replicas"] = int(options["num_replicas"])
    return SpriteService.options(**options).bind(**args)

