"""A Python client of ddpm-serve: a sheet, its atlas, and many one-sprite requests at once.

    ddpm-serve &                      # http://127.0.0.1:8000
    python examples/serve/client.py   # writes food.png, food.json, one_*.png

Concurrent requests are what the server batches: their denoising steps share UNet calls.
"""
import asyncio
import base64
import json
import sys

import httpx

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
FAST = {"sampler": "dpmpp-2m-sde", "steps": 10}   # a 10-step solver; without it, the server's default


def sheet_and_atlas():
    reply = httpx.post(f"{URL}/v1/generate", json={"n": 9, "context": "food", "seed": 3, "format": "atlas", **FAST},
                       timeout=300)
    if reply.status_code != 200:          # 422: bad settings (one line), 429: busy (Retry-After), 504: too slow
        raise SystemExit(f"{reply.status_code}: {reply.json()['error']}")
    body = reply.json()
    with open("food.png", "wb") as f:
        f.write(base64.b64decode(body["image"]))
    with open("food.json", "w") as f:
        json.dump(body["atlas"], f, indent=2)
    print("food.png + food.json:", ", ".join(body["atlas"]["frames"]), "seed", body["record"]["seed"])


async def many_single_sprites(count=16):
    async with httpx.AsyncClient(timeout=300) as client:
        async def one(k):
            reply = await client.post(f"{URL}/v1/generate", json={"n": 1, "seed": k, "context": "random", **FAST})
            while reply.status_code == 429:   # the queue is full: wait as told
                await asyncio.sleep(float(reply.headers.get("Retry-After", "1")))
                reply = await client.post(f"{URL}/v1/generate", json={"n": 1, "seed": k, "context": "random", **FAST})
            reply.raise_for_status()
            with open(f"one_{k:02d}.png", "wb") as f:
                f.write(reply.content)
        await asyncio.gather(*(one(k) for k in range(count)))
    print(f"{count} single sprites: one_00.png …")


if __name__ == "__main__":
    sheet_and_atlas()
    asyncio.run(many_single_sprites())
