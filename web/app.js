// The static page: form ↔ URL query (ddpm-run's names: n, seed, context, sampler, steps, guidance, cols,
// scale, padding; plus model, ep = auto|wasm|webgpu, threads, autorun=1), live denoising preview,
// sheet PNG + atlas downloads. When a run ends: window.ddpmEdge = {done, sheetPng, atlas, error, timings}.
import { SpriteGenerator, batchAtlas, contract, hasWebGpu, loadUnet, sheetPng, toUint8 } from "./src/index.js";
import { makeSheet } from "./src/assets/images.js";
import { SAMPLERS as JS_SAMPLERS } from "./src/solvers/index.js";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const DEFAULT_MODEL = "./models/unet.onnx";
window.ddpmEdge = { done: false, sheetPng: null, atlas: null, error: null, timings: null };

let generator = null;
let modelSource = query.get("model") || DEFAULT_MODEL;
let modelName = null;

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function ortModule(ep) {
  return ep === "webgpu" ? import("onnxruntime-web/webgpu") : import("onnxruntime-web/wasm");
}

async function loadGenerator() {
  const wanted = query.get("ep") || "auto";
  const ep = wanted === "auto" ? ((await hasWebGpu()) ? "webgpu" : "wasm") : wanted;
  const ort = await ortModule(ep);
  const threads = Number(query.get("threads")) || (globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
  ort.env.wasm.numThreads = threads;
  const t0 = performance.now();
  const unet = await loadUnet(modelSource, { ort, executionProvider: ep, numThreads: threads, name: modelName });
  const timed = Object.assign(async (...args) => {
    const t = performance.now();
    const eps = await unet(...args);
    timed.calls.push(performance.now() - t);
    return eps;
  }, unet, { calls: [] });
  generator = new SpriteGenerator(timed);
  generator.loadMs = performance.now() - t0;
  const names = ["none", ...unet.spec.context_names];
  $("context").replaceChildren(...names.map((n) => new Option(n, n)));
  $("context").value = names.includes(query.get("context")) ? query.get("context") : "none";
  $("model-name").textContent = `${unet.path} (sha256 ${unet.sha256.slice(0, 12)}…, ${ep}, ${threads} thread${threads > 1 ? "s" : ""})`;
  return generator;
}

function fillForm() {
  const available = contract.samplers.filter((s) => JS_SAMPLERS.includes(s));
  $("sampler").replaceChildren(...available.map((s) => new Option(s, s)));
  const p = contract.params;
  $("sampler").value = query.get("sampler") || (available.includes(p.sampler) ? p.sampler : available[0]);
  $("guidance").value = query.get("guidance") ?? p.guidance;
  $("steps").value = query.get("steps") ?? "";
  $("seed").value = query.get("seed") ?? "";
  $("n").value = query.get("n") ?? p.n;
}

function formParams() {
  const num = (id) => ($(id).value === "" ? null : Number($(id).value));
  const context = $("context").value;
  return { n: num("n"), seed: num("seed"), sampler: $("sampler").value, steps: num("steps"), guidance: num("guidance") ?? 0,
    context: context === "none" ? null : context };
}

function layoutFromQuery() {
  const layout = {};
  for (const key of ["cols", "scale", "padding"]) if (query.has(key)) layout[key] = Number(query.get(key));
  return layout;
}

function drawPreview(x, shape) {
  const [n, C, H, W] = shape;
  const sheet = makeSheet(toUint8(x, shape), [n, H, W, C], { scale: 1 });
  const rgba = new Uint8ClampedArray(sheet.width * sheet.height * 4);
  for (let p = 0; p < sheet.width * sheet.height; p++) {
    for (let c = 0; c < 3; c++) rgba[4 * p + c] = sheet.pixels[p * C + (C === 1 ? 0 : c)];
    rgba[4 * p + 3] = 255;
  }
  const canvas = $("preview");
  canvas.width = sheet.width;
  canvas.height = sheet.height;
  canvas.style.width = `${sheet.width * 8}px`;
  canvas.getContext("2d").putImageData(new ImageData(rgba, sheet.width, sheet.height), 0, 0);
}

function dataUrl(bytes, type) {
  let binary = "";
  for (let k = 0; k < bytes.length; k += 0x8000) binary += String.fromCharCode(...bytes.subarray(k, k + 0x8000));
  return `data:${type};base64,${btoa(binary)}`;
}

async function run() {
  window.ddpmEdge = { done: false, sheetPng: null, atlas: null, error: null, timings: null };
  $("generate").disabled = true;
  $("downloads").replaceChildren();
  try {
    if (!generator) { status("loading the model…"); await loadGenerator(); }
    const params = formParams();
    const spec = generator.spec;
    const shape = [params.n, spec.channels, spec.height, spec.width];
    generator.unet.calls = [];
    const t0 = performance.now();
    const batch = await generator.generateBatch(params, {
      progress: async (done, total, x) => {
        status(`step ${done} / ${total}`);
        drawPreview(x, shape);
        await new Promise((resolve) => setTimeout(resolve, 0));     // let the page paint
      },
    });
    const generateMs = performance.now() - t0;
    const layout = layoutFromQuery();
    const name = `sprites-${batch.params.context ?? "none"}-${batch.params.seed}`;
    const png = await sheetPng(batch, layout);
    const atlas = batchAtlas(batch, layout, `${name}.png`);
    const sheetUrl = dataUrl(png, "image/png");
    const atlasUrl = URL.createObjectURL(new Blob([JSON.stringify(atlas, null, 2) + "\n"], { type: "application/json" }));
    const link = (href, file, text) => Object.assign(document.createElement("a"), { href, download: file, textContent: text });
    $("downloads").replaceChildren(link(sheetUrl, `${name}.png`, "download sheet PNG"), link(atlasUrl, `${name}.json`, "download atlas JSON"));
    const calls = generator.unet.calls;
    const timings = { loadMs: generator.loadMs, generateMs, unetCalls: calls.length, rows: 2 * params.n,
      perCallMs: calls.reduce((a, b) => a + b, 0) / calls.length, medianCallMs: calls.slice().sort((a, b) => a - b)[calls.length >> 1],
      threads: generator.unet.numThreads, executionProvider: generator.unet.executionProvider };
    status(`${batch.params.n} sprites, ${batch.params.sampler} ${batch.params.steps} steps, seed ${batch.params.seed}: ${(generateMs / 1000).toFixed(1)} s`);
    window.ddpmEdge = { done: true, sheetPng: sheetUrl, atlas, error: null, timings, params: batch.params };
  } catch (e) {
    const reason = String(e?.message ?? e).split("\n")[0];
    status(reason, true);
    window.ddpmEdge = { done: true, sheetPng: null, atlas: null, error: reason, timings: null };
  } finally {
    $("generate").disabled = false;
  }
}

function useModelFile(file) {
  if (!file) return;
  modelSource = file;
  modelName = file.name;
  generator = null;
  $("model-name").textContent = `${file.name} (loads on Generate)`;
}

fillForm();
$("form").addEventListener("submit", (e) => { e.preventDefault(); run(); });
$("model-file").addEventListener("change", (e) => useModelFile(e.target.files[0]));
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => { e.preventDefault(); $("drop").classList.remove("over"); useModelFile(e.dataTransfer.files[0]); });
loadGenerator().then(() => {
  if (!generator.spec.context_names.includes(query.get("context") ?? "none") && query.get("context") && query.get("context") !== "none") {
    // a context that is not a class name (numbers): keep it as an extra option
    $("context").append(new Option(query.get("context"), query.get("context")));
    $("context").value = query.get("context");
  }
  status("ready");
  if (query.get("autorun") === "1") run();
}, (e) => {
  const reason = String(e?.message ?? e).split("\n")[0];
  status(reason, true);
  if (query.get("autorun") === "1") window.ddpmEdge = { done: true, sheetPng: null, atlas: null, error: reason, timings: null };
});
