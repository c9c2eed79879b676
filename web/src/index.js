// ddpm-edge in JS: the public entry point (package.json "exports": ".").
export { SpriteGenerator, resolveParams } from "./api.js";
export { loadUnet, hasWebGpu } from "./backends/ort.js";
export { readOnnxMetadata, sha256Hex } from "./backends/onnx.js";
export { contract, parseContext, specFromMetadata, VERSION } from "./contract.js";
export { PhiloxNoise, philox4x32, philoxNormal, uniform } from "./rng.js";
export { Schedule, ddimTimesteps, ddpmTimesteps } from "./schedule.js";
export { DEFAULT_STEPS, SAMPLERS, makeSampler } from "./solvers/index.js";
export { Cancelled, InjectedNoise, guided, sample, toUint8 } from "./sampling.js";
export { atlasArray, atlasDict, frameNames, batchAtlas, batchRecord, fixedLayout, pyJson, sheetPng, spriteNames } from "./assets/outputs.js";
export { makeSheet, sheetGeometry } from "./assets/images.js";
export { encodePng } from "./assets/png.js";
export { applyBackground, backgroundMask, parseBackground, sheetFill } from "./assets/background.js";
export { paramsFromRecord, readRecord } from "./assets/records.js";
