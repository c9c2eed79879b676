export { PhiloxNoise, philox4x32, philoxNormal, uniform } from "./index.js";
export function seedKey(seed: number | bigint): [number, number];
