// The generation record in a PNG (runtime/assets/records.py): one iTXt (or tEXt) chunk, key "ddpm-edge",
// holding JSON. Reading it lets the page reproduce a sheet made by ddpm-run --rng philox.
import contract from "../contract.json" with { type: "json" };

const FORMATS = [contract.record.format, "ddpm-edge-params/1"];

/** The record of a PNG file (Uint8Array), or a one-line Error. */
export function readRecord(bytes, source = "the PNG") {
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (bytes.length < 8 || signature.some((b, k) => bytes[k] !== b)) throw new Error(`${source} is not a PNG`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder();
  for (let at = 8; at + 12 <= bytes.length;) {
    const len = view.getUint32(at), type = decoder.decode(bytes.subarray(at + 4, at + 8));
    if (at + 12 + len > bytes.length) break;
    const data = bytes.subarray(at + 8, at + 8 + len);
    if (type === "iTXt" || type === "tEXt") {
      const nul = data.indexOf(0);
      if (decoder.decode(data.subarray(0, nul)) === contract.record.chunk_key) {
        let text;
        if (type === "tEXt") {
          text = new TextDecoder("latin1").decode(data.subarray(nul + 1));
        } else {
          if (data[nul + 1] !== 0) throw new Error(`${source}: its ddpm-edge record is compressed, which this reader does not take`);
          const lang = data.indexOf(0, nul + 3), translated = data.indexOf(0, lang + 1);
          text = decoder.decode(data.subarray(translated + 1));
        }
        let record;
        try { record = JSON.parse(text); } catch { throw new Error(`${source}: its ddpm-edge parameters are not valid JSON`); }
        if (!record || !FORMATS.includes(record.format)) {
          throw new Error(`${source}: unsupported ddpm-edge parameter format ${JSON.stringify(record?.format)} (expected ${FORMATS.join(" or ")})`);
        }
        return { ...contract.record.v1_defaults, ...record };
      }
    }
    if (type === "IEND") break;
    at += 12 + len;
  }
  throw new Error(`${source} carries no ddpm-edge generation parameters (only PNGs written by ddpm-run or this page do)`);
}

/** GenerationParams and layout of a record, for generateBatch / sheetPng; refuses what the browser cannot redo. */
export function paramsFromRecord(record, source = "the PNG") {
  if (record.rng !== "philox") {
    throw new Error(`${source} was made with ${record.rng} noise (NumPy's generator); the browser reproduces sheets made with ddpm-run --rng philox`);
  }
  const params = {}, layout = {};
  for (const key of Object.keys(contract.params)) if (key in record) params[key] = record[key];
  for (const key of Object.keys(contract.layout)) if (key in record) layout[key] = record[key];
  return { params, layout, model: record.model, modelSha256: record.model_sha256 };
}
