// The UNet's I/O contract (runtime/contract.py), from contract.json, which web/scripts/generate.py
// writes from the Python runtime:
//   x [N,C,H,W] float32, t [N,1] float32 (= i/T), c [N,n_cfeat] float32 → eps [N,C,H,W] float32
import contract from "./contract.json" with { type: "json" };

export { contract };
export const INPUT_NAMES = contract.inputs;
export const OUTPUT_NAMES = contract.outputs;
export const VERSION = contract.version;

/** A model's description from its ONNX metadata_props (ModelSpec.from_metadata); course defaults fill gaps. */
export function specFromMetadata(meta = {}) {
  const spec = { ...contract.spec, shortcut: "unknown", precision: "fp32", source_sha256: "", version: "" };
  for (const key of ["channels", "height", "width", "n_cfeat", "T"]) {
    if (key in meta) {
      const v = Number(meta[key]);
      if (!Number.isInteger(v)) throw new Error(`model metadata is malformed: ${key}=${meta[key]}`);
      spec[key] = v;
    }
  }
  for (const key of ["beta1", "beta2"]) {
    if (key in meta) {
      const v = Number(meta[key]);
      if (!Number.isFinite(v)) throw new Error(`model metadata is malformed: ${key}=${meta[key]}`);
      spec[key] = v;
    }
  }
  for (const key of ["shortcut", "precision", "source_sha256", "version"]) if (key in meta) spec[key] = meta[key];
  if ("context_names" in meta) {
    try { spec.context_names = JSON.parse(meta.context_names).map(String); } catch {
      throw new Error("model metadata is malformed: context_names");
    }
  }
  if (spec.context_names.length !== spec.n_cfeat) spec.context_names = Array.from({ length: spec.n_cfeat }, (_, k) => `class${k}`);
  return spec;
}

/** One-hot [n_cfeat] for a class name from the model's metadata. */
export function contextVector(spec, name) {
  const names = spec.context_names.map((n) => n.toLowerCase());
  const k = names.indexOf(String(name).toLowerCase());
  if (k < 0) throw new RangeError(`unknown context ${JSON.stringify(name)}; this model knows: ${spec.context_names.join(", ")}`);
  const v = new Float32Array(spec.n_cfeat);
  v[k] = 1;
  return v;
}

/** context → Float32Array [n·n_cfeat]: null/"none" zeros, a class name, or comma-separated numbers
 *  (api.parse_context; "random" draws from NumPy's generator and is not available here). */
export function parseContext(spec, context, n) {
  const k = spec.n_cfeat;
  let vector;
  if (context == null || (typeof context === "string" && ["", "none"].includes(context.trim().toLowerCase()))) {
    return new Float32Array(n * k);
  }
  if (typeof context === "string") {
    const text = context.trim();
    if (text.toLowerCase() === "random") throw new RangeError('context "random" draws from NumPy\'s generator; give a class name or numbers');
    if (/\d/.test(text[0] + text[text.length - 1]) || text.startsWith("-") || text.startsWith(".")) {
      vector = text.split(",").map(Number);
      if (vector.some((v) => Number.isNaN(v))) throw new RangeError(`context ${JSON.stringify(text)} is neither a name nor comma-separated numbers`);
    } else {
      vector = contextVector(spec, text);
    }
  } else {
    vector = context;
  }
  if (vector.length !== k) throw new RangeError(`context must have ${k} values (one per class: ${spec.context_names.join(", ")}), got ${vector.length}`);
  if (!Array.from(vector).every(Number.isFinite)) throw new RangeError("context values must be finite numbers");
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) out.set(vector, r * k);
  return out;
}
