"""ddpm-serve over real HTTP: uvicorn on 127.0.0.1 (an ephemeral port) and httpx clients."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from ddpm_edge.runtime.api import SpriteGenerator
from ddpm_edge.runtime.assets.outputs import SheetLayout, Targets, write_outputs
from ddpm_edge.runtime.params import GenerationParams
from ddpm_edge.runtime.solvers import make_sampler
from ddpm_edge.runtime.batching import ContinuousBatcher
from ddpm_edge.serve.app import LAYOUT_NAMES, PARAM_NAMES, create_app

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def generator():
    return SpriteGenerator.load(device="cpu")


@contextlib.contextmanager
def running(batcher: ContinuousBatcher, **app_options):
    """`create_app(batcher)` served by uvicorn in a thread on a free 127.0.0.1 port → its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(batcher, **app_options), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def url(generator):
    with running(ContinuousBatcher(generator, max_batch=64, max_n=16)) as base:
        yield base


def reference_png(generator, tmp_path: Path, name: str, **settings) -> bytes:
    """What ddpm-run writes for `settings`: api.render's generate-and-write, on an already loaded model."""
    sheet = tmp_path / f"{name}.png"
    settings = {k: v for k, v in settings.items() if v is not None}   # null: ddpm-run's default
    params = GenerationParams(**{k: v for k, v in settings.items() if k in PARAM_NAMES})
    layout = SheetLayout(**{k: v for k, v in settings.items() if k in LAYOUT_NAMES})
    write_outputs(generator.generate_batch(params), Targets(sheet=sheet), layout)
    return sheet.read_bytes()


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_32_clients_get_ddpm_runs_sprites(url, generator, tmp_path):
    """32 concurrent clients (n 1–3, ddim step counts, guidance, backgrounds, layouts) plus 4 malformed
    requests: every good one gets the PNG ddpm-run writes for its settings, byte for byte, and the UNet
    calls were shared."""
    good = [dict(n=1 + k % 3, sampler=("ddim", "dpmpp-2m-sde", "dpmpp-2m", "ddim")[k % 4], steps=(8, 10, 12)[k % 3],
                 seed=100 + k, rng=(None, "philox")[k // 16],
                 context=("food", "random", None, "0,1,0,0,0.5")[k % 4], guidance=(0.0, 2.0)[k % 2],
                 background=(None, "transparent", "#102030")[k % 3], cols=(None, 1)[k % 2], scale=1 + k % 4)
            for k in range(32)]
    bad = [{"n": 0}, {"n": 1, "sampler": "euler"}, {"n": 1, "sizes": 3}, {"n": 1, "context": "dragon"}]
    metrics_before = httpx.get(f"{url}/metrics").text
    schedule = generator.spec.schedule

    async def clients():
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(client.post(f"{url}/v1/generate", json=body) for body in good + bad))

    responses = asyncio.run(clients())
    for k, (body, response) in enumerate(zip(good, responses)):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert response.content == reference_png(generator, tmp_path, f"ref{k}", **body), body
    assert [r.status_code for r in responses[len(good):]] == [422] * len(bad)
    assert all(set(r.json()) == {"error"} for r in responses[len(good):])
    text = httpx.get(f"{url}/metrics").text
    calls = metric(text, "ddpm_batch_rows_count") - metric(metrics_before, "ddpm_batch_rows_count")
    rows = metric(text, "ddpm_batch_rows_sum") - metric(metrics_before, "ddpm_batch_rows_sum")
    assert rows == sum(b["n"] * (2 if b["guidance"] else 1)
                       * len(make_sampler(b["sampler"], schedule, b["steps"]).timesteps) for b in good)
    assert rows / calls > 8          # rows of different requests shared calls
    assert metric(text, "ddpm_queue_rows") == 0


def test_png_matches_the_ddpm_run_console_script(url, tmp_path):
    body = {"n": 3, "sampler": "ddim", "steps": 10, "seed": 7, "context": "animal", "guidance": 1.0, "padding": 2}
    out = tmp_path / "cli.png"
    subprocess.run([str(BIN / "ddpm-run"), "-n", "3", "--sampler", "ddim", "--steps", "10", "--seed", "7", "-c",
                    "animal", "--guidance", "1", "--padding", "2", "-o", str(out), "-q", "--device", "cpu"],
                   check=True, timeout=120)
    assert httpx.post(f"{url}/v1/generate", json=body, timeout=60).content == out.read_bytes()


def test_formats(url, generator):
    body = {"n": 4, "sampler": "ddim", "steps": 5, "seed": 3, "context": "face", "cols": 2}
    png = httpx.post(f"{url}/v1/generate", json=body, timeout=60).content
    atlas = httpx.post(f"{url}/v1/generate", json={**body, "format": "atlas"}, timeout=60).json()
    assert base64.b64decode(atlas["image"]) == png
    assert len(atlas["atlas"]["frames"]) == 4 and atlas["atlas"]["meta"]["size"] == {"w": 128, "h": 128}
    assert atlas["record"]["seed"] == 3 and atlas["record"]["cols"] == 2
    archive = zipfile.ZipFile(io.BytesIO(httpx.post(f"{url}/v1/generate", json={**body, "format": "zip"},
                                                    timeout=60).content))
    assert archive.namelist() == [f"face_{k:03d}.png" for k in range(4)]
    assert Image.open(archive.open("face_002.png")).size == (64, 64)
    raw = np.load(io.BytesIO(httpx.post(f"{url}/v1/generate", json={**body, "format": "npy"}, timeout=60).content))
    np.testing.assert_array_equal(raw, generator.generate_raw(4, context="face", seed=3, sampler="ddim", steps=5))


def test_bad_input_gives_the_cli_reason(url, tmp_path):
    """422 with the one line ddpm-run prints (after its `ddpm-run: error: ` prefix)."""
    cli = subprocess.run([str(BIN / "ddpm-run"), "--guidance", "-1.5", "-o", str(tmp_path / "x.png")],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 2
    response = httpx.post(f"{url}/v1/generate", json={"guidance": -1.5})
    assert response.status_code == 422
    assert cli.stderr.strip() == f"ddpm-run: error: {response.json()['error']}"
    for body, reason in ((b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"),
                         (b'{"format": "gif"}', "unknown format"), (b'{"n": 99}', "at most 16 sprites")):
        response = httpx.post(f"{url}/v1/generate", content=body)
        assert response.status_code == 422 and reason in response.json()["error"]
    huge = httpx.post(f"{url}/v1/generate", content=b'{"context": "' + b"x" * 100_000 + b'"}')
    assert huge.status_code == 413 and "exceeds" in huge.json()["error"]
    assert httpx.get(f"{url}/healthz").status_code == 200    # nothing stopped the service


def test_service_endpoints(url):
    models = httpx.get(f"{url}/v1/models").json()["models"][0]
    assert models["classes"] == ["face", "person", "animal", "food", "object"]
    assert models["sample_shape"] == [3, 16, 16] and len(models["sha256"]) == 64 and models["precision"] == "fp32"
    assert httpx.get(f"{url}/readyz").text == "ready"
    schema = httpx.get(f"{url}/openapi.json").json()
    assert "format" in schema["paths"]["/v1/generate"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["properties"]
    text = httpx.get(f"{url}/metrics").text
    for name in ("ddpm_queue_rows", "ddpm_batch_rows_bucket", "ddpm_unet_call_seconds_bucket", "ddpm_requests_total"):
        assert f"\n{name}" in text or text.startswith(name)


def test_overload_deadline_disconnect(generator):
    """429 + Retry-After past the queued-rows limit; 504 past a deadline; a disconnected client's job is
    cancelled and its rows freed."""
    batcher = ContinuousBatcher(generator, max_batch=8, max_queued_rows=4)
    with running(batcher) as base:
        slow = {"n": 4, "sampler": "ddpm", "seed": 1}   # 500 steps: runs for seconds
        with httpx.Client(timeout=60) as client:
            # a raw client that sends a request and hangs up
            sock = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])))
            payload = json.dumps(slow).encode()
            sock.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
            for _ in range(100):
                if batcher.queued_rows:
                    break
                time.sleep(0.02)
            busy = client.post(f"{base}/v1/generate", json={"n": 1, "seed": 2})
            assert busy.status_code == 429 and int(busy.headers["retry-after"]) >= 1
            sock.close()
            for _ in range(200):
                if batcher.finished["cancelled"]:
                    break
                time.sleep(0.05)
            assert batcher.finished["cancelled"] == 1
            late = client.post(f"{base}/v1/generate", json=slow, headers={"X-Timeout": "0.3"})
            assert late.status_code == 504 and "deadline exceeded" in late.json()["error"]
            assert client.post(f"{base}/v1/generate", json={"n": 1, "sampler": "ddim", "steps": 5}).status_code == 200
            text = client.get(f"{base}/metrics").text
            assert 'ddpm_requests_total{status="429"} 1' in text and 'ddpm_requests_total{status="504"} 1' in text
            assert metric(text, "ddpm_queue_rows") == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_console_script_serves_and_shuts_down(tmp_path):
    """`ddpm-serve` starts with one command on the shipped model, answers curl-like requests, and
    SIGTERM drains and stops it; a bad engine is a one-line error, exit 2."""
    port = free_port()
    proc = subprocess.Popen([str(BIN / "ddpm-serve"), "--port", str(port), "--device", "cpu"],
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            time.sleep(0.1)
        response = httpx.post(f"http://127.0.0.1:{port}/v1/generate", json={"n": 2, "sampler": "ddim", "seed": 5},
                              timeout=60)
        assert response.status_code == 200 and response.content[:8] == b"\x89PNG\r\n\x1a\n"
        proc.send_signal(signal.SIGTERM)   # uvicorn drains; then the process exits cleanly or re-raises SIGTERM
        assert proc.wait(30) in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    bad = subprocess.run([str(BIN / "ddpm-serve"), "--engine", str(tmp_path / "none.onnx")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("ddpm-serve: error: model file not found")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_examples_against_the_server(url, tmp_path):
    """examples/serve: the Python client and the curl script run against a live server."""
    examples = Path(__file__).parents[1] / "examples"
    client = subprocess.run([sys.executable, str(examples / "serve" / "client.py"), url], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert client.returncode == 0, client.stderr
    atlas = json.loads((tmp_path / "food.json").read_text())
    assert len(atlas["frames"]) == 9 and Image.open(tmp_path / "food.png").size == (atlas["meta"]["size"]["w"],
                                                                                     atlas["meta"]["size"]["h"])
    assert len(list(tmp_path.glob("one_*.png"))) == 16
    curl = subprocess.run(["sh", str(examples / "serve" / "curl.sh")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "DDPM_URL": url})
    assert curl.returncode == 0, curl.stderr
    assert "ddpm_batch_rows_sum" in curl.stdout
    assert zipfile.ZipFile(tmp_path / "sprites.zip").namelist()[0] == "person_000.png"
    # the Godot example reads exactly the keys the atlas format has
    gd = (examples / "godot" / "sprite_client.gd").read_text()
    for key in ('reply["image"]', 'reply["atlas"]["frames"]', '["frame"]', 'reply["record"]["seed"]',
                '"format": "atlas"'):
        assert key in gd


def test_serve_bench_smoke(tmp_path):
    """benchmarks/serve_bench.py runs end to end (its workings, not its speed): servers up, load with
    malformed requests, no good request failed, table and JSON written."""
    out = tmp_path / "bench"
    run = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "serve_bench.py"),
                          "--no-ray", "--seconds", "1", "--cells", "3:1", "--steps", "2", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert [r["server"] for r in report["results"]] == ["batched", "serial"]
    for row in report["results"]:
        assert row["requests"] > 0 and row["failed_good"] == 0 and row["malformed_not_422"] == 0
        assert row["replicas_seen"] == 1 and row["rows_per_call"] >= 1
    assert "| batched | 3 | 1 |" in out.with_suffix(".md").read_text()
