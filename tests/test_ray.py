"""Ray: ddpm-batch on Ray Data and the batcher as a Ray Serve deployment, on a local Ray that the tests
start on this machine (2 CPUs, no dashboard)."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray")   # a dev dependency: present in CI
from ray import serve  # noqa: E402

from ddpm_edge.runtime.api import SpriteGenerator  # noqa: E402
from ddpm_edge.runtime.assets.outputs import SheetLayout, Targets, write_outputs  # noqa: E402
from ddpm_edge.runtime.params import GenerationParams  # noqa: E402
from ddpm_edge.serve.batch import plan, run_batch, shard_seed  # noqa: E402

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cluster():
    context = ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield context.address_info["gcs_address"]
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def generator():
    return SpriteGenerator.load(device="cpu")


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ddpm_batch_shards_reproduce_and_resume(cluster, generator, tmp_path):
    out = tmp_path / "set"
    args = [str(BIN / "ddpm-batch"), "--total", "7", "--per-shard", "3", "--out", str(out), "--seed", "5",
            "--sampler", "ddim", "--steps", "5", "-c", "random", "--scale", "2", "--address", cluster]
    first = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "7 sprites in 3 shards (3 generated, 0 already complete), seed 5" in first.stderr
    files = snapshot(out)
    assert sorted(files) == ["batch.json", "manifest.jsonl", "manifest.parquet"] + [
        f"shards/shard_{k:06d}.{ext}" for k in range(3) for ext in ("json", "png")]
    # shard k is what ddpm-run writes for n_k sprites from seed_k
    for k, n in enumerate((3, 3, 1)):
        sheet = tmp_path / f"ref{k}.png"
        write_outputs(generator.generate_batch(GenerationParams(n=n, seed=shard_seed(5, k), sampler="ddim",
                                                                steps=5, context="random")),
                      Targets(sheet=sheet), SheetLayout(scale=2))
        assert files[f"shards/shard_{k:06d}.png"][0] == sheet.read_bytes()
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [m["index"] for m in manifest] == list(range(7))
    assert pq.read_table(out / "manifest.parquet").to_pylist() == manifest
    assert len({m["seed"] for m in manifest}) == 3
    # a crash: shard 1 lost its JSON (incomplete), shard 2 lost everything
    (out / "shards/shard_000001.json").unlink()
    for path in out.glob("shards/shard_000002.*"):
        path.unlink()
    job = plan(out, 7, 3, None, None, sampler="ddim", steps=5, context="random", scale=2)   # seed from batch.json
    assert job.seed == 5
    assert run_batch(job, quiet=True) == (2, 1)            # in this process: reuses the running Ray
    again = snapshot(out)
    assert {k: v[0] for k, v in again.items()} == {k: v[0] for k, v in files.items()}   # the same bytes
    assert again["shards/shard_000000.png"][1] == files["shards/shard_000000.png"][1]    # skipped, untouched
    # a rerun with different settings is refused, one line, exit 2
    other = subprocess.run(args[:-2] + ["--guidance", "1"], capture_output=True, text=True, timeout=60)
    assert other.returncode == 2 and other.stderr.strip().endswith("choose another --out")
    assert "guidance" in other.stderr and len(other.stderr.strip().splitlines()) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_serve_deployment(cluster, generator, tmp_path):
    """The batcher as a Ray Serve deployment: concurrent clients get ddpm-run's PNGs, bad input gets 422,
    and the replica's UNet calls were shared."""
    from ddpm_edge.serve.ray_serve import build_app
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"max_batch": 32, "threads": 1, "num_replicas": 1}), name="ddpm", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    bodies = [{"n": 1 + k % 2, "sampler": "ddim", "steps": 10, "seed": k, "context": "person"} for k in range(8)]

    async def clients():
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(client.post(f"{url}/v1/generate", json=b) for b in bodies + [{"n": -1}]))

    responses = asyncio.run(clients())
    for k, (body, response) in enumerate(zip(bodies, responses)):
        assert response.status_code == 200, response.text
        sheet = tmp_path / f"{k}.png"
        write_outputs(generator.generate_batch(GenerationParams(**body)), Targets(sheet=sheet))
        assert response.content == sheet.read_bytes()
    assert responses[-1].status_code == 422 and "number of sprites" in responses[-1].json()["error"]
    metrics = httpx.get(f"{url}/metrics").text
    rows = float(next(line.split()[1] for line in metrics.splitlines() if line.startswith("ddpm_batch_rows_sum")))
    calls = float(next(line.split()[1] for line in metrics.splitlines() if line.startswith("ddpm_batch_rows_count")))
    assert rows == 12 * 10 and calls < 8 * 10          # 8 requests × 10 steps in fewer calls
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert httpx.get(f"{url}/v1/models").json()["models"][0]["limits"]["max_batch_rows"] == 32
    serve.delete("ddpm")


def test_ray_serve_config_file():
    """serve/ray_serve.yaml is a valid Serve config whose import path builds the deployment."""
    import yaml
    from ray.serve.schema import ServeDeploySchema
    from ddpm_edge.serve.ray_serve import build_app
    config = ServeDeploySchema.model_validate(yaml.safe_load(Path(__file__).parents[1].joinpath(
        "serve", "ray_serve.yaml").read_text()))
    app = config.applications[0]
    module, name = app.import_path.split(":")
    assert module == "ddpm_edge.serve.ray_serve" and name == "build_app"
    deployment = app.deployments[0]
    assert (deployment["name"] if isinstance(deployment, dict) else deployment.name) == "SpriteService"
    assert isinstance(build_app(app.args), serve.Application)
