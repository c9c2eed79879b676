"""`ddpm-batch`: offline generation of many sprites on Ray Data, sharded and resumable.

    ddpm-batch --total 100000 --per-shard 256 --out sprites/ --seed 7 --sampler ddim -c food

OUT/batch.json        the batch: total, per_shard, seed, generation settings, layout, model sha256
OUT/shards/shard_000123.png   shard k's sheet (its PNG record reproduces it: `ddpm-run --from`)
OUT/shards/shard_000123.json  shard k's sprites (name, cell, seed), written after the sheet: it marks k complete
OUT/manifest.jsonl, OUT/manifest.parquet   every sprite of every shard, in shard order

Shard k draws its noise from seed_k = SeedSequence([seed, k]) (32 bits), so rerunning shard k rewrites
the same bytes whatever else runs. Every file is written atomically; a shard whose JSON exists and
names its sheet's sha256 is complete and skipped on rerun, anything else is (re)generated. Without
--address a local Ray starts (127.0.0.1, no dashboard); Ray Data runs one shard per task, each worker
process loading the model once.
"""
from __future__ import annotations

import json
import math
import os
import secrets
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ddpm_edge.runtime.assets.outputs import SheetLayout, Targets, write_outputs
from ddpm_edge.runtime.cli_errors import Device, make_app, one_line_errors, run_app, version_option
from ddpm_edge.runtime.errors import DdpmEdgeError, MissingDependency
from ddpm_edge.runtime.files import atomic_path, atomic_write_bytes, sha256_file
from ddpm_edge.runtime.params import SEED_BITS, GenerationParams

MAX_PER_SHARD = 1 << 16
MAX_TOTAL = 1 << 40
_GENERATORS: dict = {}     # per worker process: (engine, device, threads, backend, precision) → SpriteGenerator


def shard_seed(seed: int, shard: int) -> int:
    """The noise seed of shard k: independent streams per shard, the same on every rerun."""
    return int(np.random.SeedSequence([seed, shard]).generate_state(1)[0]) & ((1 << SEED_BITS) - 1)


@dataclass(frozen=True)
class BatchJob:
    out: str                  # absolute folder
    total: int
    per_shard: int
    seed: int
    settings: dict            # GenerationParams fields except n and seed
    layout: dict              # SheetLayout fields
    engine: str | None        # absolute model path, None: the shipped model
    model_sha256: str
    device: str = "cpu"
    threads: int = 1
    backend: str = "auto"
    precision: str | None = None

    @property
    def shards(self) -> int:
        return math.ceil(self.total / self.per_shard)

    def shard_n(self, k: int) -> int:
        return min(self.per_shard, self.total - k * self.per_shard)

    def sheet(self, k: int) -> Path:
        return Path(self.out) / "shards" / f"shard_{k:06d}.png"

    def identity(self) -> dict:
        """What must match for a rerun to continue a batch: not the device or thread count."""
        return {k: v for k, v in asdict(self).items() if k not in ("out", "engine", "device", "threads")}


def _generator(job: BatchJob):
    key = (job.engine, job.device, job.threads, job.backend, job.precision)
    if key not in _GENERATORS:
        from .models import load_generator
        _GENERATORS[key] = load_generator(job.engine, job.device, job.threads, job.backend, job.precision)
    return _GENERATORS[key]


def complete(job: BatchJob, k: int) -> bool:
    """Shard k's JSON exists and names the sha256 of the sheet beside it."""
    sheet = job.sheet(k)
    try:
        entry = json.loads(sheet.with_suffix(".json").read_text(encoding="utf-8"))
        return sheet.is_file() and entry.get("sheet_sha256") == sha256_file(sheet)
    except (OSError, ValueError, AttributeError):
        return False


def generate_shard(job: BatchJob, k: int) -> dict:
    """Generate and write shard k (sheet, then its JSON); returns the JSON's content."""
    generator = _generator(job)
    if generator.model_sha256 != job.model_sha256:
        raise DdpmEdgeError(f"worker model sha256 {generator.model_sha256[:12]}… is not the batch's")
    n, seed = job.shard_n(k), shard_seed(job.seed, k)
    batch = generator.generate_batch(GenerationParams(n=n, seed=seed, **job.settings))
    layout = SheetLayout(**job.layout).fixed(n)
    sheet = job.sheet(k)
    write_outputs(batch, Targets(sheet=sheet), layout)
    height, width = batch.sprites.shape[1:3]
    labels = generator.context_labels(batch.params)
    sprites = [{"index": k * job.per_shard + j, "shard": k, "sprite": j, "name": name, "label": label,
                "sheet": f"shards/{sheet.name}", "x": x, "y": y, "w": w, "h": h, "seed": seed}
               for j, (name, label, (x, y, w, h))
               in enumerate(zip(batch.names, labels, layout.cells(n, height, width)))]
    entry = {"shard": k, "n": n, "seed": seed, "sheet": f"shards/{sheet.name}", "sheet_sha256": sha256_file(sheet),
             "sprites": sprites}
    atomic_write_bytes(sheet.with_suffix(".json"), (json.dumps(entry, indent=1) + "\n").encode())
    return entry


def _shards_udf(rows: dict, job: dict) -> dict:
    """Ray Data map_batches: a batch of shard numbers → the same, each written."""
    batch_job = BatchJob(**job)
    done = [generate_shard(batch_job, int(k))["shard"] for k in rows["shard"]]
    return {"shard": np.asarray(done, dtype=np.int64)}


def write_manifest(job: BatchJob) -> Path:
    """manifest.jsonl and manifest.parquet: every sprite of every shard, in order (atomic)."""
    rows = []
    for k in range(job.shards):
        rows += json.loads(job.sheet(k).with_suffix(".json").read_text(encoding="utf-8"))["sprites"]
    out = Path(job.out)
    atomic_write_bytes(out / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:     # JSON Lines alone is a complete manifest
        return out / "manifest.jsonl"
    with atomic_path(out / "manifest.parquet") as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
    return out / "manifest.jsonl"


def plan(out: Path, total: int, per_shard: int, seed: int | None, engine: Path | None, device: str = "cpu",
         threads: int = 1, backend: str = "auto", precision: str | None = None, **settings) -> BatchJob:
    """Validate everything and pin the batch in OUT/batch.json (or check a rerun matches it)."""
    for name, value, high in (("total", total, MAX_TOTAL), ("per-shard", per_shard, MAX_PER_SHARD)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise DdpmEdgeError(f"{name} must be an integer from 1 to {high}, got {value!r}")
    param_names = {f.name for f in fields(GenerationParams)} - {"n", "seed"}
    layout_names = {f.name for f in fields(SheetLayout)}
    unknown = set(settings) - param_names - layout_names
    if unknown:
        raise DdpmEdgeError(f"unknown settings: {', '.join(sorted(unknown))}")
    given = {k: v for k, v in settings.items() if v is not None}
    params = GenerationParams(n=per_shard, seed=0, **{k: v for k, v in given.items() if k in param_names})
    layout = SheetLayout(**{k: v for k, v in given.items() if k in layout_names})
    from ddpm_edge.runtime.backends import default_model_path
    model = Path(engine).resolve() if engine is not None else default_model_path()
    if not model.is_file():
        raise DdpmEdgeError(f"model file not found: {model}")
    from ddpm_edge.runtime.backends import pick_backend
    pick_backend(model, backend, precision)      # refuse a backend/precision the model cannot take, before Ray
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise DdpmEdgeError(f"{out} exists and is not a folder")
    recorded = None
    if (out / "batch.json").is_file():
        try:
            recorded = json.loads((out / "batch.json").read_text(encoding="utf-8"))
        except ValueError:
            raise DdpmEdgeError(f"{out / 'batch.json'} is not valid JSON; remove it or choose another --out") from None
    if seed is None:
        seed = recorded["seed"] if isinstance(recorded, dict) and "seed" in recorded else secrets.randbits(SEED_BITS)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DdpmEdgeError(f"seed must be a non-negative integer, got {seed!r}")
    job = BatchJob(out=str(out), total=total, per_shard=per_shard, seed=seed,
                   settings={k: v for k, v in params.as_dict().items() if k in param_names},
                   layout=layout.as_dict(), engine=str(model), model_sha256=sha256_file(model), device=device,
                   threads=threads, backend=backend, precision=precision)
    if recorded is not None and recorded != job.identity():
        flat = lambda d: {f"{k}.{j}" if isinstance(v, dict) else k: w for k, v in d.items()   # noqa: E731
                          for j, w in (v.items() if isinstance(v, dict) else [(None, v)])}
        was, now = flat(recorded), flat(job.identity())
        differs = sorted(k.split(".")[-1] for k in set(was) | set(now) if was.get(k) != now.get(k))
        raise DdpmEdgeError(f"{out} holds a different batch ({', '.join(differs)} differ); rerun with its settings "
                            "or choose another --out")
    (out / "shards").mkdir(parents=True, exist_ok=True)
    if recorded is None:
        atomic_write_bytes(out / "batch.json", (json.dumps(job.identity(), indent=1) + "\n").encode())
    return job


def run_batch(job: BatchJob, address: str | None = None, workers: int | None = None,
              quiet: bool = False) -> tuple[int, int]:
    """Generate the missing shards on Ray Data and write the manifest → (generated, skipped)."""
    todo = [k for k in range(job.shards) if not complete(job, k)]
    if todo:
        try:
            import ray
            import ray.data
        except ImportError:
            raise MissingDependency("ddpm-batch needs Ray: pip install 'ddpm-edge[ray]'") from None
        started = not ray.is_initialized()
        if started:
            options = {"address": address} if address else {
                "num_cpus": workers or os.cpu_count(), "include_dashboard": False, "_node_ip_address": "127.0.0.1"}
            ray.init(log_to_driver=not quiet, configure_logging=not quiet, **options)
        try:
            ray.data.DataContext.get_current().enable_progress_bars = not quiet
            shards = ray.data.from_items([{"shard": k} for k in todo], override_num_blocks=len(todo))
            written = shards.map_batches(_shards_udf, batch_size=1, fn_kwargs={"job": asdict(job)}, num_cpus=1,
                                         compute=ray.data.TaskPoolStrategy(size=workers))
            done = sorted(int(row["shard"]) for row in written.take_all())
        finally:
            if started:
                ray.shutdown()
        if done != todo:
            raise DdpmEdgeError(f"shards {sorted(set(todo) - set(done))} were not written; rerun to resume")
    missing = [k for k in range(job.shards) if not complete(job, k)]
    if missing:
        raise DdpmEdgeError(f"{len(missing)} shards are incomplete (first: {missing[0]}); rerun to resume")
    write_manifest(job)
    return len(todo), job.shards - len(todo)


app = make_app("Generate many sprites offline on Ray Data: sharded, one seed per shard, resumable.")


@app.command()
@one_line_errors("ddpm-batch")
def batch(
    total: int = typer.Option(..., "--total", help="number of sprites"),
    per_shard: int = typer.Option(..., "--per-shard", help="sprites per shard (one sheet each)"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder: shards/, manifest.jsonl, manifest.parquet"),
    seed: Optional[int] = typer.Option(None, help="batch seed; shard k uses SeedSequence([seed, k]) "
                                                  "(default: drawn, or the folder's batch.json on a rerun)"),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: start a local Ray)"),
    workers: Optional[int] = typer.Option(None, help="shards generated at once (default: one per CPU)"),
    threads: int = typer.Option(1, help="ONNX Runtime threads per worker"),
    engine: Optional[Path] = typer.Option(None, "--engine", "-e", help="unet.onnx; default: the shipped model"),
    sampler: Optional[str] = typer.Option(None, help="the solver, as ddpm-run --sampler"),
    steps: Optional[int] = typer.Option(None, help="solver steps, as ddpm-run"),
    eta: Optional[float] = typer.Option(None, help="ddim only: η, as ddpm-run"),
    spacing: Optional[str] = typer.Option(None, help="uniform, logsnr or karras, as ddpm-run"),
    rng: Optional[str] = typer.Option(None, "--rng", help="noise generator pcg64 or philox, as ddpm-run"),
    context: Optional[str] = typer.Option(None, "--context", "-c", help="a class name, numbers, random, or none"),
    guidance: Optional[float] = typer.Option(None, help="classifier-free guidance weight (default 0)"),
    background: Optional[str] = typer.Option(None, "--background", "-b", help="keep, transparent, or a colour"),
    tolerance: Optional[int] = typer.Option(None, help="background keying tolerance 0-255"),
    scale: Optional[int] = typer.Option(None, help="nearest-neighbour upscale of each sprite (default 4)"),
    cols: Optional[int] = typer.Option(None, help="sprites per sheet row (default: square grid)"),
    padding: Optional[int] = typer.Option(None, help="pixels around and between sheet cells (default 0)"),
    device: Device = typer.Option(Device.cpu, help="ONNX Runtime device of each worker"),
    backend: str = typer.Option("auto", help="auto, onnxruntime, openvino or tensorrt, as ddpm-run --backend"),
    precision: Optional[str] = typer.Option(None, help="fp32, bf16, int8 or fp16, as ddpm-run --precision"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress or summary"),
    version: bool = version_option("ddpm-batch"),
) -> None:
    """Write TOTAL sprites as sheets of PER_SHARD into OUT/shards with a manifest; a rerun skips complete
    shards and regenerates the others byte for byte."""
    if workers is not None and workers < 1 or threads < 1:
        raise DdpmEdgeError("workers and threads must be at least 1")
    job = plan(out, total, per_shard, seed, engine, device=device.value, threads=threads, backend=backend,
               precision=precision, sampler=sampler,
               steps=steps, eta=eta, spacing=spacing, rng=rng, context=context, guidance=guidance,
               background=background, tolerance=tolerance, scale=scale, cols=cols, padding=padding)
    generated, skipped = run_batch(job, address=address, workers=workers, quiet=quiet)
    if not quiet:
        typer.echo(f"ddpm-batch: {job.total} sprites in {job.shards} shards ({generated} generated, {skipped} "
                   f"already complete), seed {job.seed} → {Path(job.out) / 'manifest.jsonl'}", err=True)


def main() -> None:
    run_app(app, "ddpm-batch")
