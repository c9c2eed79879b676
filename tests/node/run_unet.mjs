// node run_unet.mjs MODEL DIR: reads DIR/inputs.json ({"x": [shape], "t": [...], "c": [...]}) and the raw
// little-endian float32 DIR/x.bin, t.bin, c.bin; runs MODEL with onnxruntime-node (CPU); writes DIR/eps.bin
// and prints {"eps": shape, "version": ...}. tests/test_portability.py compares eps with Python ONNX Runtime.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import ort from "onnxruntime-node";

const [model, dir] = process.argv.slice(2);
const shapes = JSON.parse(readFileSync(join(dir, "inputs.json"), "utf8"));
const feeds = {};
for (const [name, shape] of Object.entries(shapes)) {
  const bytes = readFileSync(join(dir, `${name}.bin`));
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  feeds[name] = new ort.Tensor("float32", data, shape);
}
const session = await ort.InferenceSession.create(model, { executionProviders: ["cpu"] });
const { eps } = await session.run(feeds);
writeFileSync(join(dir, "eps.bin"), Buffer.from(eps.data.buffer, eps.data.byteOffset, eps.data.byteLength));
const version = createRequire(import.meta.url)("onnxruntime-node/package.json").version;
console.log(JSON.stringify({ eps: eps.dims, version }));
