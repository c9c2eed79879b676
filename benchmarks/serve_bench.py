"""Load benchmark of the sprite service on loopback: continuous batching vs one request at a time vs Ray Serve.

    nice -n 5 python benchmarks/serve_bench.py [--seconds 8] [--cells 1:1,8:1,32:1,64:1,32:4,32:16]
                                               [--sampler dpmpp-2m-sde --steps 10] [--no-ray]

Servers (all on 127.0.0.1, each in its own process(es), started once and used in turn):
  batched   ddpm-serve: one ContinuousBatcher, requests share UNet calls (max 64 rows per call)
  serial    the same service and code, but the batcher steps only the oldest request until it is done:
            one request at a time (what a plain "lock around generate()" service does)
  ray-1     the batcher as a Ray Serve deployment, 1 replica
  ray-2     the same, 2 replicas, Ray Serve routing between them
Every server process runs ONNX Runtime with --threads intra-op threads (default 1: on a shared 2-core
machine a spinning 2-thread pool loses more than it gains, worst for the large batched calls) and splits
each tick's rows into --parallel slices evaluated at once (default 2; a lone n=1 request cannot split).

Each cell (C closed-loop clients asking n sprites each) runs every server in turn (interleaved, so the
machine's load drifts over all alike) for --seconds of load after one warm-up request per client; one
request in ten is malformed (expects 422). Reported: good sprites/s, p50/p99 latency of good requests,
server CPU milliseconds per sprite (user + system time of the inference processes, from /proc: on a shared
machine the wall-clock rates depend on the share each server gets, CPU per sprite much less),
rows per UNet call (from the server's /metrics, summed over the replicas seen), failed good requests,
malformed requests not answered 422. Writes OUT.json, OUT.md (table) and OUT.png (plot).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MALFORMED = [b'{"n": 0}', b'{"n": 1, "sampler": "euler"}', b'{"nn": 1}', b'{not json', b'{"n": 1, "guidance": -1}']


# -- the one-request-at-a-time server (run as a subprocess of this script) --------------------------

def serve_serial(port: int, max_batch: int, threads: int | None, parallel: int) -> None:
    import uvicorn

    from ddpm_edge.runtime.batching import ContinuousBatcher
    from ddpm_edge.serve.app import create_app
    from ddpm_edge.serve.models import load_generator

    class SerialBatcher(ContinuousBatcher):
        """Steps only the earliest-admitted request, so each runs alone from x_T to x_0."""

        def _select(self):
            return [min(self._active, key=lambda job: job.submitted)]

    batcher = SerialBatcher(load_generator(None, "cpu", threads), max_batch=max_batch, parallel=parallel)
    uvicorn.run(create_app(batcher), host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=75)


# -- load --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def cpu_seconds(pid: str) -> float:
    """User + system CPU time of a local process, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(url: str, tries: int = 8) -> dict:
    """pid → (rows, UNet calls, CPU seconds) so far, from /metrics and /proc; several scrapes, to reach
    each replica behind Ray Serve."""
    seen = {}
    for _ in range(tries):
        text = httpx.get(f"{url}/metrics", timeout=30).text
        get = lambda name: float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))   # noqa: E731
        pid = re.search(r'^ddpm_server_info\{pid="(\d+)"\}', text, re.M).group(1)
        seen[pid] = (get("ddpm_batch_rows_sum"), get("ddpm_batch_rows_count"), cpu_seconds(pid))
    return seen


def deltas(before: dict, after: dict) -> tuple[float, float, float, int]:
    """(rows, UNet calls, CPU seconds, processes) between two scrapes, over the processes seen in both."""
    pids = set(before) & set(after)
    rows, calls, cpu = (sum(after[p][k] - before[p][k] for p in pids) for k in range(3))
    return rows, calls, cpu, len(pids)


async def load(url: str, clients: int, n: int, seconds: float, body: dict, processes: int = 1) -> dict:
    """C closed-loop clients for `seconds`; every 10th request of a client is malformed."""
    good_latency, failures, malformed_wrong, malformed = [], [], 0, 0
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        payload = json.dumps({**body, "n": n}).encode()
        await asyncio.gather(*(client.post(f"{url}/v1/generate", content=payload) for _ in range(clients)))  # warm-up
        before = scrape(url)
        started = time.perf_counter()
        stop = started + seconds

        async def one(k: int):
            nonlocal malformed_wrong, malformed
            count = 0
            while time.perf_counter() < stop:
                count += 1
                bad = (count + k) % 10 == 0
                data = MALFORMED[(count + k) % len(MALFORMED)] if bad else payload
                t0 = time.perf_counter()
                try:
                    response = await client.post(f"{url}/v1/generate", content=data)
                    status = response.status_code
                except httpx.HTTPError as e:
                    status = type(e).__name__
                if bad:
                    malformed += 1
                    malformed_wrong += status != 422
                elif status == 200:
                    good_latency.append(time.perf_counter() - t0)
                else:
                    failures.append(status)

        await asyncio.gather(*(one(k) for k in range(clients)))
        elapsed = time.perf_counter() - started
    after = scrape(url)
    rows, calls, cpu, seen = deltas(before, after)
    sprites = len(good_latency) * n
    lat = sorted(good_latency)
    q = lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))] if lat else float("nan")   # noqa: E731
    return {"clients": clients, "n": n, "requests": len(lat), "sprites_per_s": len(lat) * n / elapsed,
            "p50_s": q(0.50), "p99_s": q(0.99), "mean_s": statistics.fmean(lat) if lat else float("nan"),
            "rows_per_call": rows / calls if calls else float("nan"), "replicas_seen": seen,
            # server CPU per sprite: what throughput would be on cores of its own (inference processes only)
            "cpu_ms_per_sprite": 1e3 * cpu / sprites if sprites and seen == processes else float("nan"),
            "failed_good": len(failures), "failures": {str(k): v for k, v in collections.Counter(failures).items()},
            "malformed": malformed, "malformed_not_422": malformed_wrong, "elapsed_s": elapsed}


# -- servers -----------------------------------------------------------------------------------------

def start_servers(args) -> tuple[dict, list]:
    urls, procs = {}, []
    bin_dir = Path(sys.executable).parent
    port = free_port()
    threads = (["--threads", str(args.threads)] if args.threads else []) + ["--parallel", str(args.parallel)]
    procs.append(subprocess.Popen([str(bin_dir / "ddpm-serve"), "--port", str(port), "--device", "cpu",
                                   "--max-batch", str(args.max_batch), "--max-n", "64", *threads]))
    urls["batched"] = f"http://127.0.0.1:{port}"
    port = free_port()
    procs.append(subprocess.Popen([sys.executable, __file__, "--serve-serial", str(port),
                                   "--threads", str(args.threads), "--parallel", str(args.parallel)]))
    urls["serial"] = f"http://127.0.0.1:{port}"
    if not args.no_ray:
        import ray
        from ray import serve

        from ddpm_edge.serve.ray_serve import build_app
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for replicas in (1, 2):
            serve.run(build_app({"num_replicas": replicas, "threads": args.threads or 2 // replicas,
                                 "parallel": max(1, args.parallel // replicas),
                                 "max_batch": args.max_batch,
                                 "ray_actor_options": {"num_cpus": 0.5}}),
                      name=f"r{replicas}", route_prefix=f"/r{replicas}")
            urls[f"ray-{replicas}"] = f"http://127.0.0.1:{port}/r{replicas}"
    for url in urls.values():
        wait_ready(url)
    return urls, procs


def stop_servers(procs: list, ray_used: bool) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if ray_used:
        import ray
        from ray import serve
        serve.shutdown()
        ray.shutdown()


# -- report --------------------------------------------------------------------------------------------

def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def write_report(out: Path, results: list[dict], meta: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    lines = [f"# Serving benchmark ({meta['sampler']} {meta['steps']} steps, {meta['seconds']} s of load per cell, "
             f"ONNX Runtime threads per server process: {meta.get('threads') or 'default'}, "
             f"--parallel {meta.get('parallel', 1)})", "",
             f"Machine: {meta['machine']}; 1-min load average before/after: {meta['load_before']:.1f} / "
             f"{meta['load_after']:.1f} "
             "(the machine is shared). Command: `" + meta["command"] + "`", "",
             "| server | clients | n | sprites/s | p50 s | p99 s | rows/UNet call | server CPU ms/sprite "
             "| good failed | malformed ≠ 422 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['server']} | {r['clients']} | {r['n']} | {r['sprites_per_s']:.1f} | {r['p50_s']:.3f} | "
                     f"{r['p99_s']:.3f} | {r['rows_per_call']:.1f} | {r['cpu_ms_per_sprite']:.1f} | "
                     f"{r['failed_good']} | {r['malformed_not_422']} of {r['malformed']} |")
    ratios = []
    for cell in sorted({(r["clients"], r["n"]) for r in results}):
        by = {r["server"]: r for r in results if (r["clients"], r["n"]) == cell}
        if "batched" in by and "serial" in by:
            b, s = by["batched"], by["serial"]
            ratios.append(f"| {cell[0]} | {cell[1]} | {b['sprites_per_s'] / s['sprites_per_s']:.2f}× | "
                          f"{b['p99_s'] / s['p99_s']:.2f} | {s['cpu_ms_per_sprite'] / b['cpu_ms_per_sprite']:.2f}× |")
    lines += ["", "Continuous batching vs one request at a time (batched / serial; CPU efficiency = serial's "
              "server CPU per sprite / batched's):", "",
              "| clients | n | sprites/s ratio | p99 ratio | CPU efficiency ratio |", "|---:|---:|---:|---:|---:|",
              *ratios]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for server in dict.fromkeys(r["server"] for r in results):
        rows = sorted((r for r in results if r["server"] == server and r["n"] == 1), key=lambda r: r["clients"])
        if rows:
            left.plot([r["clients"] for r in rows], [r["sprites_per_s"] for r in rows], "o-", label=server)
            right.plot([r["clients"] for r in rows], [r["p99_s"] for r in rows], "o-", label=server)
    left.set(xscale="log", xlabel="concurrent clients (n = 1)", ylabel="sprites / s", title="throughput")
    right.set(xscale="log", yscale="log", xlabel="concurrent clients (n = 1)", ylabel="p99 latency (s)",
              title="tail latency")
    left.legend()
    fig.suptitle(f"ddpm-serve on loopback, {meta['sampler']} {meta['steps']} steps")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="load per cell and server")
    parser.add_argument("--cells", default="1:1,8:1,32:1,64:1,32:4,32:16", help="clients:n,…")
    parser.add_argument("--sampler", default="dpmpp-2m-sde")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--max-batch", type=int, default=64, help="rows per UNet call of the batched servers")
    parser.add_argument("--servers", default="batched,serial,ray-1,ray-2")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--parallel", type=int, default=2,
                        help="row slices evaluated at once per tick (ray-2: this / 2 per replica)")
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads of every server process (0: ONNX Runtime's default; "
                             "ray-1 then 2, ray-2 1 per replica)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_bench")
    parser.add_argument("--serve-serial", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_serial:
        return serve_serial(args.serve_serial, args.max_batch, args.threads or None, args.parallel)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cells = [tuple(int(v) for v in cell.split(":")) for cell in args.cells.split(",")]
    wanted = [s for s in args.servers.split(",") if not (args.no_ray and s.startswith("ray"))]
    meta = {"machine": machine(), "load_before": os.getloadavg()[0], "sampler": args.sampler, "steps": args.steps,
            "seconds": args.seconds, "threads": args.threads, "parallel": args.parallel,
            "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}
    urls, procs = start_servers(args)
    results = []
    try:
        for clients, n in cells:
            for server in wanted:
                body = {"sampler": args.sampler, "steps": args.steps, "seed": 1}
                processes = 2 if server == "ray-2" else 1
                result = {"server": server,
                          **asyncio.run(load(urls[server], clients, n, args.seconds, body, processes))}
                results.append(result)
                print(f"{server:8s} clients={clients:3d} n={n:2d}  {result['sprites_per_s']:7.1f} sprites/s  "
                      f"p50 {result['p50_s']:.3f} s  p99 {result['p99_s']:.3f} s  rows/call "
                      f"{result['rows_per_call']:.1f}  cpu {result['cpu_ms_per_sprite']:.1f} ms/sprite  "
                      f"failed {result['failed_good']}  malformed≠422 "
                      f"{result['malformed_not_422']}/{result['malformed']}", flush=True)
    finally:
        stop_servers(procs, not args.no_ray)
        meta["load_after"] = os.getloadavg()[0]
        write_report(args.out, results, meta)
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
