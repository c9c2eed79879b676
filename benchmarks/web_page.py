"""Serve web/ on 127.0.0.1 and drive its page in headless Chromium (web/test/browser/drive.mjs): shared by
tests/test_web_browser.py and benchmarks/web_bench.py. The server sends the cross-origin isolation
headers (COOP/COEP) that wasm threads need; any static host that sends them serves the page the same."""
from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
DRIVER = WEB / "test" / "browser" / "drive.mjs"


class PlainHandler(SimpleHTTPRequestHandler):
    """A plain static host: file types only."""
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".js": "text/javascript",
                      ".wasm": "application/wasm", ".json": "application/json", ".onnx": "application/octet-stream"}

    def log_message(self, *args):
        pass


class IsolatedHandler(PlainHandler):
    """A static host that makes the page cross-origin isolated (wasm threads)."""

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@contextmanager
def serve(root: Path = WEB, isolated: bool = True):
    """http://127.0.0.1:PORT/ serving `root` until the block ends (with COOP/COEP headers when `isolated`)."""
    handler = IsolatedHandler if isolated else PlainHandler
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def find_node() -> str | None:
    return shutil.which("node") or next((p for p in ("/usr/bin/node", "/usr/local/bin/node") if os.path.exists(p)), None)


def vendor() -> None:
    """Copy onnxruntime-web's builds and the shipped model into web/ (web/scripts/vendor.mjs)."""
    subprocess.run([find_node(), str(WEB / "scripts" / "vendor.mjs")], check=True, capture_output=True, timeout=120)


def drive(urls: list[str], timeout: float = 900) -> list[dict]:
    """window.ddpmEdge of each page once it is done (sheetPng stays a data URL)."""
    result = subprocess.run([find_node(), str(DRIVER), *urls, "--timeout", str(int(timeout))], capture_output=True,
                            text=True, cwd=WEB, timeout=timeout * len(urls) + 120)
    if result.returncode != 0:
        raise RuntimeError(f"drive.mjs failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def png_bytes(data_url: str) -> bytes:
    head, _, body = data_url.partition(",")
    assert head == "data:image/png;base64", head
    return base64.b64decode(body)
