"""Run the quality gate (runtime/gate.py) for every low-precision engine of a model, print the verdicts.

    python benchmarks/lowprec_gate.py [--config dpmpp-2m-sde:10:guidance=2] [--n 500] [--seeds 0,1,2] [--ship]

Candidates: OpenVINO bf16 of the fp32 model, onnxruntime int8 and OpenVINO int8 (weights/unet_int8.onnx /
.xml when present, else exported once into the cache without a gate, as benchmarks/engines.py does).
Each is compared with the fp32 model on onnxruntime: same solver config, seeds and noise; the yardstick's
verdict. Verdicts go to the user cache; with --ship also to weights/verdicts.json (shipped, read first at
first use), where the lead keeps the verdicts of the shipped model at the shipped defaults.
Writes benchmarks/results/lowprec_gate.{json,md}. Time: about 2 × seeds × (fp32 + candidates) runs of n
sprites; ~15 min at n=500, 3 seeds on the project's loaded 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ddpm_edge.runtime import gate
from ddpm_edge.runtime.backends import default_model_path, load_unet
from ddpm_edge.runtime.backends.ort import OnnxUnet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from engines import int8_model, say  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=gate.DEFAULT_CONFIG)
    parser.add_argument("--n", type=int, default=gate.DEFAULT_N)
    parser.add_argument("--seeds", default=",".join(map(str, gate.DEFAULT_SEEDS)))
    parser.add_argument("--onnx", type=Path, default=None, help="fp32 UNet (default: the shipped model)")
    parser.add_argument("--int8-onnx", type=Path, default=None)
    parser.add_argument("--int8-xml", type=Path, default=None)
    parser.add_argument("--only", default="", help="comma-separated subset: ort-int8, ov-bf16, ov-int8")
    parser.add_argument("--ship", action="store_true", help="also write the verdicts to weights/verdicts.json")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lowprec_gate")
    args = parser.parse_args()
    started = time.monotonic()
    config = gate.GateConfig.parse(args.config, n=args.n, seeds=[int(s) for s in args.seeds.split(",")])
    fp32 = args.onnx or default_model_path()
    twin = OnnxUnet(fp32, device="cpu")
    makers = {"ov-bf16": lambda: load_unet(fp32, backend="openvino", precision="bf16"),
              "ort-int8": lambda: load_unet(int8_model(fp32, ".onnx", args.int8_onnx), device="cpu"),
              "ov-int8": lambda: load_unet(int8_model(fp32, ".xml", args.int8_xml), precision="int8")}
    wanted = [k for k in makers if not args.only or k in args.only.split(",")]
    from ddpm_edge.runtime.quality import Yardstick
    yardstick = Yardstick.load()
    rows = []
    for name in wanted:
        try:
            unet = makers[name]()
        except Exception as e:   # e.g. openvino missing: listed, not fatal
            rows.append({"engine": name, "equal": None, "reason": str(e).splitlines()[0][:200]})
            say(f"{name}: unavailable ({rows[-1]['reason']})")
            continue
        key = gate.verdict_key(unet.sha256, unet.backend, unet.precision, config)
        verdict = gate.lookup(key)
        if verdict is None:
            say(f"{name}: measuring at {config.label}, {len(config.seeds)} seeds × {config.n} sprites")
            verdict = gate.measure(unet, twin, config, yardstick, log=say)
            gate.store(key, verdict)
        if args.ship:
            gate.store(key, verdict, gate.SHIPPED_VERDICTS)
        say(f"{name}: {verdict.reason}")
        rows.append({"engine": name, "key": key, **asdict(verdict)})
    lines = [f"Quality gate at {config.label}, {len(config.seeds)} seeds × {config.n} class-balanced sprites, "
             f"vs fp32 onnxruntime ({Path(fp32).name}); command: `python benchmarks/lowprec_gate.py "
             f"{' '.join(sys.argv[1:])}`", "", "| engine | verdict | reason |", "|---|---|---|"]
    for row in rows:
        verdict = "—" if row["equal"] is None else "EQUAL (accepted)" if row["equal"] else "NOT EQUAL (refused)"
        lines.append(f"| {row['engine']} | {verdict} | {row['reason']} |")
    table = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(table)
    args.out.with_suffix(".json").write_text(json.dumps({"config": config.key, "rows": rows}, indent=1) + "\n")
    print("\n" + table)
    say(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
