"""Can the quality gate refuse? A naive int8 of the shipped model (NNCF defaults: every op quantized,
calibrated on random noise instead of sampling trajectories) through the real gate at its default config.

    DDPM_EDGE_CACHE=... python benchmarks/naive_int8_gate.py     # ~10 min on the loaded 2-core machine

Writes /tmp/naive_int8.xml (not shipped); prints its eps error and the verdict.
"""
import logging, time, numpy as np, nncf, openvino as ov
logging.getLogger("nncf").setLevel(logging.ERROR)
from ddpm_edge.runtime import gate
from ddpm_edge.runtime.backends import default_model_path, load_unet
from ddpm_edge.runtime.backends.ort import OnnxUnet
from ddpm_edge.runtime.backends.ov import set_ir_metadata
from ddpm_edge.runtime.quality import Yardstick
src = default_model_path()
rng = np.random.default_rng(0)
items = [{"x": rng.standard_normal((1, 3, 16, 16), dtype=np.float32), "t": rng.uniform(0, 1, (1, 1)).astype(np.float32),
          "c": np.eye(5, dtype=np.float32)[rng.integers(0, 5, 1)]} for _ in range(300)]
q = nncf.quantize(ov.Core().read_model(str(src)), nncf.Dataset(items), subset_size=300)
from ddpm_edge.runtime.backends.common import onnx_summary
meta, _ = onnx_summary(src)
set_ir_metadata(q, {**meta, "precision": "int8"})
ov.save_model(q, "/tmp/naive_int8.xml", compress_to_fp16=False)
unet, twin = load_unet("/tmp/naive_int8.xml"), OnnxUnet(src, device="cpu")
x = rng.standard_normal((64, 3, 16, 16), dtype=np.float32); t = rng.uniform(0, 1, (64, 1)).astype(np.float32); c = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 64)]
print("naive mean |Δeps| on random inputs", float(np.abs(unet(x, t, c) - twin(x, t, c)).mean()), flush=True)
cfg = gate.GateConfig.parse(gate.DEFAULT_CONFIG)
v = gate.measure(unet, twin, cfg, Yardstick.load(), log=lambda m: print(m, flush=True))
print("VERDICT", v.equal, v.reason)
