"""`ddpm-serve`: the HTTP service on uvicorn, one continuous batcher over one model."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ddpm_edge.runtime.cli_errors import Device, make_app, one_line_errors, run_app, version_option
from ddpm_edge.runtime.batching import DEFAULT_MAX_BATCH, DEFAULT_MAX_N, DEFAULT_MAX_QUEUED_ROWS
from ddpm_edge.runtime.errors import DdpmEdgeError, MissingDependency

app = make_app("Serve sprites over HTTP; concurrent requests share UNet calls (continuous batching).")


@app.command()
@one_line_errors("ddpm-serve")
def serve(
    engine: Optional[Path] = typer.Option(None, "--engine", "-e",
                                          help="unet.onnx or unet.plan; default: the shipped model"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, help="TCP port (0: any free port)"),
    max_batch: int = typer.Option(DEFAULT_MAX_BATCH,
                                  help="most rows in one UNet call (guided requests count 2 per sprite)"),
    max_n: int = typer.Option(DEFAULT_MAX_N, help="most sprites one request may ask for"),
    max_queued_rows: int = typer.Option(DEFAULT_MAX_QUEUED_ROWS,
                                        help="rows admitted at once; more → 429 Retry-After"),
    timeout: float = typer.Option(300.0, help="seconds a request may take (a request's X-Timeout header may lower it)"),
    drain: float = typer.Option(30.0, help="on shutdown, seconds to let admitted requests finish"),
    device: Device = typer.Option(Device.auto, help="ONNX Runtime device: auto (CUDA if available), cpu, cuda"),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime / OpenVINO intra-op threads (default: theirs)"),
    parallel: int = typer.Option(1, help="split each tick's rows into this many slices run at once (ONNX Runtime; "
                                         "e.g. --parallel 2 --threads 1 on a busy 2-core machine)"),
    backend: str = typer.Option("auto", help="auto, onnxruntime, openvino or tensorrt, as ddpm-run --backend"),
    precision: Optional[str] = typer.Option(None, help="fp32, bf16, int8 or fp16, as ddpm-run --precision"),
    log_level: str = typer.Option("warning", help="uvicorn log level (info logs every request)"),
    keep_alive: int = typer.Option(75, help="seconds an idle HTTP keep-alive connection stays open (a client "
                                            "reusing one the server just closed sees a failed request)"),
    version: bool = version_option("ddpm-serve"),
) -> None:
    """Serve POST /v1/generate (ddpm-run's settings as JSON; format png|atlas|zip|npy), GET /v1/models,
    /healthz, /readyz, /metrics. Ctrl-C or SIGTERM drains and stops."""
    try:
        import uvicorn
        from .app import create_app
    except ImportError as e:
        raise MissingDependency("ddpm-serve needs the serve extra: pip install 'ddpm-edge[serve]' "
                                f"({e.name} missing)") from None
    from ddpm_edge.runtime.batching import ContinuousBatcher
    from .models import load_generator
    if not 0 <= port <= 65535:
        raise DdpmEdgeError(f"port must be 0 to 65535, got {port}")
    if not timeout > 0 or not drain >= 0:
        raise DdpmEdgeError("timeout must be > 0 and drain >= 0 seconds")
    generator = load_generator(engine, device=device.value, threads=threads, backend=backend,
                               precision=precision)
    batcher = ContinuousBatcher(generator, max_batch=max_batch, max_n=max_n, max_queued_rows=max_queued_rows,
                                parallel=parallel)
    typer.echo(f"ddpm-serve: {generator.model_path} on http://{host}:{port} (max {max_batch} rows per UNet call)",
               err=True)
    uvicorn.run(create_app(batcher, timeout=timeout, drain=drain), host=host, port=port, log_level=log_level,
                timeout_graceful_shutdown=max(1, int(drain)), timeout_keep_alive=keep_alive)


def main() -> None:
    run_app(app, "ddpm-serve")
