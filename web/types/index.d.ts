// Types of the ddpm-edge JS package (src/index.js). Tensors are flat Float32Arrays in C order.

export interface ModelSpec {
  channels: number; height: number; width: number; n_cfeat: number;
  T: number; beta1: number; beta2: number; context_names: string[];
  shortcut: string; precision: string; source_sha256: string; version: string;
}

/** eps = unet(x [n,C,H,W], t [n,1], c [n,n_cfeat], n) */
export type UnetFn = (x: Float32Array, t: Float32Array, c: Float32Array, n: number) => Promise<Float32Array>;

export interface Unet extends UnetFn {
  spec: ModelSpec; sha256: string; path: string; backend: string; precision: string;
  executionProvider: "wasm" | "webgpu"; numThreads: number; release(): Promise<void>;
}

export interface LoadOptions {
  /** the onnxruntime-web module: import * as ort from "onnxruntime-web/wasm" (or "/webgpu") */
  ort: unknown;
  executionProvider?: "wasm" | "webgpu";
  /** wasm threads (needs a cross-origin isolated page for more than 1) */
  numThreads?: number;
  /** the model's file name, recorded in sheets (default: from the URL or File) */
  name?: string;
}

export type ModelSource = string | URL | Blob | ArrayBuffer | Uint8Array;

export function loadUnet(model: ModelSource, options: LoadOptions): Promise<Unet>;
export function hasWebGpu(): Promise<boolean>;
export function readOnnxMetadata(bytes: Uint8Array): Record<string, string>;
export function sha256Hex(bytes: Uint8Array | ArrayBuffer): Promise<string>;

/** ddpm-run's parameters (GenerationParams); unset ones take ddpm-run's defaults. */
export interface GenerationParams {
  n?: number; seed?: number | null; sampler?: string; steps?: number | null;
  /** a class name, "none", or comma-separated numbers */
  context?: string | number[] | null;
  guidance?: number; eta?: number; spacing?: "uniform" | "logsnr" | "karras";
  /** null/"keep", "transparent" (RGBA sprites), or "#rrggbb" */
  background?: string | null; tolerance?: number; rng?: "philox";
}

export type ResolvedParams = Required<GenerationParams>;

export interface Batch {
  samples: Float32Array;            // [n, C, H, W], x_0 unclipped
  sprites: Uint8Array;              // [n, H, W, C]
  spriteShape: [number, number, number, number];
  names: string[];                  // food_003 …
  params: ResolvedParams;
  modelSha256: string; modelPath: string; version: string; backend: string; precision: string;
}

export type Progress = (done: number, total: number, x: Float32Array) => boolean | void | Promise<boolean | void>;

export class SpriteGenerator {
  constructor(unet: Unet);
  static load(model: ModelSource, options: LoadOptions): Promise<SpriteGenerator>;
  readonly unet: Unet;
  readonly spec: ModelSpec;
  readonly schedule: Schedule;
  contextLabels(context: GenerationParams["context"], n: number): string[];
  generateBatch(params?: GenerationParams, options?: { progress?: Progress | null }): Promise<Batch>;
}
export function resolveParams(given: GenerationParams, T: number): ResolvedParams;

export interface SheetLayout { cols?: number | null; scale?: number; padding?: number }
export interface Atlas {
  frames: Record<string, { frame: { x: number; y: number; w: number; h: number }; rotated: false; trimmed: false;
    spriteSourceSize: { x: number; y: number; w: number; h: number }; sourceSize: { w: number; h: number };
    pivot: { x: number; y: number } }>;
  meta: { app: string; version: string; image: string; format: string; size: { w: number; h: number }; scale: string };
}
/** The sheet PNG with its ddpm-edge record (ddpm-run --from reproduces it). */
export function sheetPng(batch: Batch, layout?: SheetLayout): Promise<Uint8Array>;
/** TexturePacker "JSON (hash)" atlas of the sheet (Phaser: this.load.atlas(key, imageName, atlas)). */
export function batchAtlas(batch: Batch, layout?: SheetLayout, imageName?: string, format?: "hash" | "array"): Atlas | AtlasArray;
export interface AtlasArray { frames: (Atlas["frames"][string] & { filename: string })[]; meta: Atlas["meta"] }
export function frameNames(sheetStem: string, names: string[]): string[];
export function batchRecord(batch: Batch, layout?: SheetLayout): Record<string, unknown>;
export function atlasDict(names: string[], size: [number, number], layout: Required<SheetLayout>, imageName: string,
  channels?: number, appVersion?: string): Atlas;
export function fixedLayout(layout: SheetLayout, n: number): Required<SheetLayout>;
export function spriteNames(labels: string[]): string[];
export function pyJson(value: unknown, key?: string | null): string;
export function makeSheet(sprites: Uint8Array, shape: [number, number, number, number],
  options?: SheetLayout & { fill?: Uint8Array | null }): { width: number; height: number; channels: number; pixels: Uint8Array };
export function sheetGeometry(n: number, height: number, width: number, cols?: number | null, scale?: number,
  padding?: number): [[number, number], [number, number, number, number][]];
export function encodePng(image: { width: number; height: number; channels: 1 | 3 | 4; pixels: Uint8Array },
  text?: Record<string, string>): Promise<Uint8Array>;

export class Schedule {
  constructor(options?: { T?: number; beta1?: number; beta2?: number });
  readonly T: number; readonly beta1: number; readonly beta2: number;
  readonly betas: Float32Array; readonly alphas: Float32Array; readonly alphas_cumprod: Float32Array;
  tInput(i: number): number;
}
export function ddpmTimesteps(schedule: Schedule): number[];
export function ddimTimesteps(schedule: Schedule, steps: number): number[];

export interface Solver {
  readonly name: string; readonly schedule: Schedule; readonly timesteps: number[];
  needsNoise(i: number): boolean;
  step(x: Float32Array, eps: Float32Array, i: number, z?: Float32Array | null): Float32Array;
}
export const SAMPLERS: string[];
export const DEFAULT_STEPS: Record<string, number | null>;
export function makeSampler(name: string, schedule: Schedule,
  options?: { steps?: number | null; eta?: number; spacing?: string }): Solver;

export interface Noise { initial(size: number): Float32Array; step(k: number, size: number): Float32Array }
export class PhiloxNoise implements Noise {
  constructor(seed: number | bigint);
  readonly seed: number | bigint; readonly rng: "philox";
  initial(size: number): Float32Array; step(k: number, size: number): Float32Array;
}
export class InjectedNoise implements Noise {
  constructor(xT: Float32Array, z?: Float32Array[]);
  initial(size: number): Float32Array; step(k: number, size: number): Float32Array;
}
export function philox4x32(counter: number[], key: number[], rounds?: number): number[];
export function philoxNormal(seed: number | bigint, stream: number, count: number): Float32Array;
export function uniform(word: number): number;

export class Cancelled extends Error {}
export function sample(unet: UnetFn, sampler: Solver, shape: [number, number, number, number], context: Float32Array,
  noise: Noise, progress?: Progress | null): Promise<Float32Array>;
export function guided(unet: UnetFn, weight: number): UnetFn;
export function toUint8(samples: Float32Array, shape: [number, number, number, number]): Uint8Array;

export const contract: Record<string, unknown>;
export const VERSION: string;
export function specFromMetadata(meta?: Record<string, string>): ModelSpec;
export function parseContext(spec: ModelSpec, context: GenerationParams["context"], n: number): Float32Array;

export function parseBackground(text: string | null | undefined): null | "transparent" | string;
export function backgroundMask(sprites: Uint8Array, shape: [number, number, number, number], tolerance?: number): Uint8Array;
export function applyBackground(sprites: Uint8Array, shape: [number, number, number, number], background: string | null,
  tolerance?: number): [Uint8Array, [number, number, number, number]];
export function sheetFill(background: string | null, channels: number): Uint8Array;
export function readRecord(bytes: Uint8Array, source?: string): Record<string, unknown>;
export function paramsFromRecord(record: Record<string, unknown>, source?: string):
  { params: GenerationParams; layout: SheetLayout; model: string; modelSha256: string };
