// The UNet on onnxruntime-web (runtime/backends/ort.py's twin): wasm (SIMD, threads when the page is
// cross-origin isolated) or WebGPU. The caller passes the `ort` module it bundles
// (import * as ort from "onnxruntime-web/wasm" or "onnxruntime-web/webgpu"), so games pick the build.
import { INPUT_NAMES, OUTPUT_NAMES, specFromMetadata } from "../contract.js";
import { readOnnxMetadata, sha256Hex } from "./onnx.js";

/** Bytes of a model given as a URL, a File/Blob, an ArrayBuffer or a Uint8Array. */
async function modelBytes(model) {
  if (model instanceof Uint8Array) return model;
  if (model instanceof ArrayBuffer) return new Uint8Array(model);
  if (typeof Blob !== "undefined" && model instanceof Blob) return new Uint8Array(await model.arrayBuffer());
  const response = await fetch(model);
  if (!response.ok) throw new Error(`cannot load model ${model}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** A WebGPU adapter exists (navigator.gpu alone is not enough: headless or blocklisted GPUs have none). */
export async function hasWebGpu() {
  try {
    return Boolean(globalThis.navigator?.gpu && (await globalThis.navigator.gpu.requestAdapter()));
  } catch {
    return false;
  }
}

/**
 * Load a UNet. Returns `unet(x, t, c, n) → Promise<Float32Array eps>` with .spec, .sha256, .path (file
 * name), .backend ("onnxruntime-web"), .executionProvider ("wasm" | "webgpu"), .numThreads, .release().
 * @param model URL, File/Blob, ArrayBuffer or Uint8Array of an .onnx
 * @param {{ort: any, executionProvider?: "wasm"|"webgpu", numThreads?: number, name?: string}} options
 */
export async function loadUnet(model, { ort, executionProvider = "wasm", numThreads = 0, name = null } = {}) {
  if (!ort) throw new Error("loadUnet needs the onnxruntime-web module: loadUnet(model, {ort})");
  const bytes = await modelBytes(model);
  let meta;
  try {
    meta = readOnnxMetadata(bytes);
  } catch (e) {
    throw new Error(`${name ?? "the model"} is not a readable ONNX file (${e.message})`);
  }
  const spec = specFromMetadata(meta);
  const sha256 = await sha256Hex(bytes);
  if (numThreads) ort.env.wasm.numThreads = numThreads;
  let session;
  try {
    session = await ort.InferenceSession.create(bytes, { executionProviders: [executionProvider], graphOptimizationLevel: "all" });
  } catch (e) {
    throw new Error(`onnxruntime-web cannot open ${name ?? "the model"}: ${String(e.message ?? e).split("\n")[0]}`);
  }
  const missing = [...INPUT_NAMES, ...OUTPUT_NAMES].filter((n) => ![...session.inputNames, ...session.outputNames].includes(n));
  if (missing.length) throw new Error(`${name ?? "the model"} lacks the UNet's tensors ${missing.join(", ")} (inputs x, t, c; output eps)`);
  const [C, H, W, K] = [spec.channels, spec.height, spec.width, spec.n_cfeat];

  async function unet(x, t, c, n) {
    const feeds = {   // copies: with ort.env.wasm.proxy the buffers move to the worker (detached here)
      x: new ort.Tensor("float32", x.slice(), [n, C, H, W]),
      t: new ort.Tensor("float32", t.slice(), [n, 1]),
      c: new ort.Tensor("float32", c.slice(), [n, K]),
    };
    const result = await session.run(feeds);
    const eps = result.eps;
    const data = eps.location === "gpu-buffer" ? await eps.getData() : eps.data;
    return data instanceof Float32Array ? data : Float32Array.from(data);
  }
  const path = name ?? (typeof model === "string" ? model.split("/").pop().split("?")[0] : model?.name ?? "model.onnx");
  return Object.assign(unet, {
    spec, sha256, path, backend: "onnxruntime-web", executionProvider, precision: spec.precision,
    numThreads: ort.env.wasm.numThreads, release: () => session.release(),
  });
}
