"""ddpm-edge as a service: `ddpm-serve` (HTTP, continuous batching), Ray Serve and Ray Data batch jobs.

Needs the `serve` extra (fastapi, uvicorn, httpx); Ray needs the `ray` extra."""
