// Make web/ servable as it stands: copy onnxruntime-web's browser builds into vendor/ort/ and the
// shipped model into models/unet.onnx (both git-ignored). Run after `npm ci`: `npm run vendor`.
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(web, "node_modules", "onnxruntime-web", "dist");
const keep = (name) => /^ort\.(wasm|webgpu)\.bundle\.min\.mjs$/.test(name) || /^ort-wasm-simd-threaded(\.jsep|\.asyncify)?\.(wasm|mjs)$/.test(name);
mkdirSync(join(web, "vendor", "ort"), { recursive: true });
for (const name of readdirSync(dist).filter(keep)) copyFileSync(join(dist, name), join(web, "vendor", "ort", name));
mkdirSync(join(web, "models"), { recursive: true });
copyFileSync(join(web, "..", "weights", "unet.onnx"), join(web, "models", "unet.onnx"));
console.log(`vendored ${readdirSync(join(web, "vendor", "ort")).join(", ")} and models/unet.onnx`);
