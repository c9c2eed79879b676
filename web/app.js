// The static page. Settings come from ddpm-run's defaults (contract.json), then a sheet's record (a dropped
// PNG, or ?from=URL), then the URL query, with ddpm-run's names: n, seed, context, sampler, steps, guidance,
// eta, spacing, background, tolerance, cols, scale, padding, atlas-format (hash|array); plus model=URL,
// ep=auto|wasm|webgpu, threads=N, proxy=0 (inference on the page's thread, not a worker), autorun=1.
// The denoising is drawn live; the sheet PNG (with its ddpm-edge record) and the atlas are offered for
// download. When a run ends: window.ddpmEdge = {done, sheetPng (data URL), atlas, error, timings, params}.
import { SpriteGenerator, batchAtlas, contract, hasWebGpu, loadUnet, sheetPng, toUint8 } from "./src/index.js";
import { makeSheet } from "./src/assets/images.js";
import { paramsFromRecord, readRecord } from "./src/assets/records.js";
import { SAMPLERS as JS_SAMPLERS, SPACINGS } from "./src/solvers/index.js";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const PARAM_FIELDS = ["n", "seed", "context", "sampler", "steps", "guidance", "eta", "spacing", "background", "tolerance"];
const LAYOUT_FIELDS = ["cols", "scale", "padding"];
window.ddpmEdge = { done: false, sheetPng: null, atlas: null, error: null, timings: null };

let generator = null;
let modelSource = query.get("model") || "./models/unet.onnx";
let modelName = null;
let layout = {};
let wantSha256 = null;     // a loaded sheet's model

const oneLine = (e) => String(e?.message ?? e).split("\n")[0];

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function finish(state) {
  window.ddpmEdge = { done: true, sheetPng: null, atlas: null, error: null, timings: null, ...state };
}

async function loadGenerator() {
  const wanted = query.get("ep") || "auto";
  const ep = wanted === "auto" ? ((await hasWebGpu()) ? "webgpu" : "wasm") : wanted;
  const ort = await (ep === "webgpu" ? import("onnxruntime-web/webgpu") : import("onnxruntime-web/wasm"));
  const threads = Number(query.get("threads")) || (globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
  ort.env.wasm.proxy = query.get("proxy") !== "0";     // inference in a worker: the page stays responsive
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
  const current = $("context").value || $("context").dataset.wanted || "none";
  $("context").replaceChildren(...["none", ...unet.spec.context_names].map((n) => new Option(n, n)));
  setContext(current);
  $("model-name").textContent = `${unet.path} (sha256 ${unet.sha256.slice(0, 12)}…, ${ep}, ${threads} thread${threads > 1 ? "s" : ""})`;
}

function setContext(value) {
  const text = value == null ? "none" : Array.isArray(value) ? value.join(",") : String(value);
  if (![...$("context").options].some((o) => o.value === text)) $("context").append(new Option(text, text));   // numbers
  $("context").value = text;
  $("context").dataset.wanted = text;
}

function setBackground(value) {
  const text = value == null || value === "" ? "keep" : String(value).toLowerCase();
  if (![...$("background").options].some((o) => o.value === text)) $("background").append(new Option(text, text));
  $("background").value = text;
}

/** Put settings (params and layout, any subset) into the form. */
function applySettings(settings) {
  for (const key of PARAM_FIELDS) {
    if (!(key in settings)) continue;
    if (key === "context") setContext(settings.context);
    else if (key === "background") setBackground(settings.background);
    else $(key).value = settings[key] ?? "";
  }
  for (const key of LAYOUT_FIELDS) if (key in settings) layout[key] = settings[key] == null ? null : Number(settings[key]);
}

function initForm() {
  const available = contract.samplers.filter((s) => JS_SAMPLERS.includes(s));
  $("sampler").replaceChildren(...available.map((s) => new Option(s, s)));
  $("spacing").replaceChildren(...SPACINGS.map((s) => new Option(s, s)));
  const p = contract.params;
  applySettings({ ...p, sampler: available.includes(p.sampler) ? p.sampler : available[0] });
}

function querySettings() {
  return Object.fromEntries([...PARAM_FIELDS, ...LAYOUT_FIELDS].filter((k) => query.has(k)).map((k) => [k, query.get(k)]));
}

/** A sheet made by ddpm-run --rng philox (or this page): its record fills the form. */
async function useSheet(bytes, source) {
  const { params, layout: recorded, modelSha256 } = paramsFromRecord(readRecord(bytes, source), source);
  layout = {};
  applySettings({ ...params, ...recorded });
  wantSha256 = modelSha256;
  status(`settings from ${source}`);
}

function formParams() {
  const num = (id) => ($(id).value === "" ? null : Number($(id).value));
  const context = $("context").value;
  return { n: num("n"), seed: num("seed"), sampler: $("sampler").value, steps: num("steps"), guidance: num("guidance"),
    eta: num("eta") ?? 0, spacing: $("spacing").value, context: context === "none" ? null : context,
    background: $("background").value === "keep" ? null : $("background").value, tolerance: num("tolerance") ?? contract.params.tolerance };
}

function drawPreview(x, shape) {   // the raw denoising (keying applies to the finished sprites)
  const [n, C, H, W] = shape;
  const sheet = makeSheet(toUint8(x, shape), [n, H, W, C], { scale: 1 });
  const rgba = new Uint8ClampedArray(sheet.width * sheet.height * 4);
  for (let p = 0; p < sheet.width * sheet.height; p++) {
    for (let c = 0; c < 3; c++) rgba[4 * p + c] = sheet.pixels[p * C + (C === 1 ? 0 : c)];
    rgba[4 * p + 3] = 255;
  }
  const canvas = $("preview");
  Object.assign(canvas, { width: sheet.width, height: sheet.height });
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
    if (wantSha256 && generator.unet.sha256 !== wantSha256) {
      throw new Error(`the sheet was made by model sha256 ${wantSha256.slice(0, 12)}…, not by ${generator.unet.path} `
        + `(${generator.unet.sha256.slice(0, 12)}…): drop the model that made it`);
    }
    const params = formParams();
    const spec = generator.spec;
    const shape = [params.n, spec.channels, spec.height, spec.width];
    generator.unet.calls = [];
    const t0 = performance.now();
    let previewFrames = 0;
    const batch = await generator.generateBatch(params, {
      progress: async (done, total, x) => {
        status(`step ${done} / ${total}`);
        drawPreview(x, shape);
        previewFrames++;
        await new Promise((resolve) => setTimeout(resolve, 0));     // let the page paint
      },
    });
    const generateMs = performance.now() - t0;
    const name = `sprites-${batch.params.context ?? "none"}-${batch.params.seed}`;
    const png = await sheetPng(batch, layout);
    const atlas = batchAtlas(batch, layout, `${name}.png`, query.get("atlas-format") || "hash");
    const sheetUrl = dataUrl(png, "image/png");
    const atlasUrl = URL.createObjectURL(new Blob([JSON.stringify(atlas, null, 2) + "\n"], { type: "application/json" }));
    const link = (href, file, text) => Object.assign(document.createElement("a"), { href, download: file, textContent: text });
    $("downloads").replaceChildren(link(sheetUrl, `${name}.png`, "download sheet PNG"), link(atlasUrl, `${name}.json`, "download atlas JSON"));
    const calls = generator.unet.calls;
    const timings = { loadMs: generator.loadMs, generateMs, unetCalls: calls.length, calls, previewFrames,
      medianCallMs: calls.slice().sort((a, b) => a - b)[calls.length >> 1],
      threads: generator.unet.numThreads, executionProvider: generator.unet.executionProvider };
    status(`${batch.params.n} sprites, ${batch.params.sampler} ${batch.params.steps} steps, seed ${batch.params.seed}: ${(generateMs / 1000).toFixed(1)} s`);
    finish({ sheetPng: sheetUrl, atlas, timings, params: batch.params });
  } catch (e) {
    status(oneLine(e), true);
    finish({ error: oneLine(e) });
  } finally {
    $("generate").disabled = false;
  }
}

async function useFile(file) {
  if (!file) return;
  if (/\.png$/i.test(file.name)) {
    try { await useSheet(new Uint8Array(await file.arrayBuffer()), file.name); } catch (e) { status(oneLine(e), true); }
    return;
  }
  modelSource = file;
  modelName = file.name;
  generator = null;
  $("model-name").textContent = `${file.name} (loads on Generate)`;
}

async function start() {
  initForm();
  if (query.get("from")) {
    const from = query.get("from");
    const response = await fetch(from);
    if (!response.ok) throw new Error(`cannot load ${from}: HTTP ${response.status}`);
    await useSheet(new Uint8Array(await response.arrayBuffer()), from.split("/").pop());
  }
  applySettings(querySettings());
  await loadGenerator();
  status("ready");
}

$("form").addEventListener("submit", (e) => { e.preventDefault(); run(); });
$("model-file").addEventListener("change", (e) => useFile(e.target.files[0]));
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => { e.preventDefault(); $("drop").classList.remove("over"); useFile(e.dataTransfer.files[0]); });
start().then(() => { if (query.get("autorun") === "1") run(); }, (e) => {
  status(oneLine(e), true);
  if (query.get("autorun") === "1") finish({ error: oneLine(e) });
});
