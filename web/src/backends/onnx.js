// Read an ONNX file's metadata_props without a protobuf library: ModelProto field 14 holds
// StringStringEntryProto {key = 1, value = 2}; every other top-level field is skipped by its length.

function varint(bytes, at) {
  let value = 0, scale = 1, b;
  do {
    if (at >= bytes.length) throw new Error("not an ONNX model: truncated varint");
    b = bytes[at++];
    value += (b & 0x7f) * scale;
    scale *= 128;
  } while (b & 0x80);
  return [value, at];
}

function fields(bytes, start, end, visit) {
  let at = start;
  while (at < end) {
    let tag;
    [tag, at] = varint(bytes, at);
    const number = Math.floor(tag / 8), wire = tag & 7;
    if (wire === 0) { [, at] = varint(bytes, at); } else if (wire === 1) { at += 8; } else if (wire === 5) { at += 4; } else if (wire === 2) {
      let len;
      [len, at] = varint(bytes, at);
      if (at + len > end) throw new Error("not an ONNX model: field runs past the end");
      visit(number, at, at + len);
      at += len;
    } else {
      throw new Error(`not an ONNX model: wire type ${wire}`);
    }
  }
  if (at !== end) throw new Error("not an ONNX model: fields overrun");
}

/** Uint8Array of an .onnx file → {key: value} of its metadata_props. */
export function readOnnxMetadata(bytes) {
  const meta = {};
  const text = new TextDecoder();
  fields(bytes, 0, bytes.length, (number, start, end) => {
    if (number !== 14) return;
    let key = "", value = "";
    fields(bytes, start, end, (n, s, e) => {
      if (n === 1) key = text.decode(bytes.subarray(s, e));
      if (n === 2) value = text.decode(bytes.subarray(s, e));
    });
    meta[key] = value;
  });
  return meta;
}

/** Hex sha256 of bytes (Web Crypto: browsers, Node ≥ 18). */
export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
