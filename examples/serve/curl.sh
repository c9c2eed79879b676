#!/usr/bin/env sh
# Ask a running `ddpm-serve` (default http://127.0.0.1:8000) for a sheet and for a sheet + atlas.
set -eu
URL=${DDPM_URL:-http://127.0.0.1:8000}
# the sheet PNG, byte-identical to: ddpm-run -n 4 --seed 1 -c food --sampler dpmpp-2m-sde --steps 10 -o food.png  (its record is inside)
curl -fsS -X POST "$URL/v1/generate" -H 'Content-Type: application/json' \
     -d '{"n": 4, "seed": 1, "context": "food", "sampler": "dpmpp-2m-sde", "steps": 10}' -o food.png
# the same sheet as base64 plus its TexturePacker atlas, in one JSON
curl -fsS -X POST "$URL/v1/generate" -H 'Content-Type: application/json' \
     -d '{"n": 4, "seed": 1, "context": "food", "sampler": "dpmpp-2m-sde", "steps": 10, "format": "atlas"}' -o food_atlas.json
# one PNG per sprite, transparent background
curl -fsS -X POST "$URL/v1/generate" -H 'Content-Type: application/json' \
     -d '{"n": 8, "context": "person", "background": "transparent", "sampler": "ddim", "steps": 20, "format": "zip"}' -o sprites.zip
curl -fsS "$URL/v1/models"; echo
curl -fsS "$URL/metrics" | grep -E '^ddpm_(queue_rows|batch_rows_(sum|count))'
