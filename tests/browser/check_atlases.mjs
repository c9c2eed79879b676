// node check_atlases.mjs ASSETS_DIR SHEET… : load each SHEET's atlas (ASSETS_DIR/SHEET.json beside SHEET.png)
// with Phaser 3 (this.load.atlas, canvas renderer) and PixiJS 8 (Assets.load) in headless Chromium, and print
// one JSON object: per engine and sheet, every frame's name, rectangle and pixels (RGBA, base64) as the engine
// resolved them against its own copy of the sheet; for PixiJS also which sheet its global cache returns for
// each frame name. tests/test_engines_browser.py compares all of it with the sheets ddpm-run wrote.
import { createServer } from "node:http";
import { existsSync, readFileSync } from "node:fs";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = fileURLToPath(new URL(".", import.meta.url));
const [assets, ...sheets] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);
if (!executablePath) { console.error("check_atlases.mjs: no chromium found (set CHROMIUM)"); process.exit(3); }

const files = {
  "/vendor/phaser.js": join(here, "node_modules/phaser/dist/phaser.min.js"),
  "/vendor/pixi.js": join(here, "node_modules/pixi.js/dist/pixi.min.js"),
};
const types = { ".js": "text/javascript", ".json": "application/json", ".png": "image/png", ".html": "text/html" };
const page = `<!doctype html><meta charset="utf-8"><body>
<script src="/vendor/phaser.js"></script><script src="/vendor/pixi.js"></script>
<script>
function framePixels(source, x, y, w, h) {           // the engine's frame rectangle, cut from its own image
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(source, x, y, w, h, 0, 0, w, h);
  const data = ctx.getImageData(0, 0, w, h).data;
  let text = ""; for (let k = 0; k < data.length; k++) text += String.fromCharCode(data[k]);
  return btoa(text);
}
function phaser(sheets) {
  return new Promise((resolve, reject) => {
    const out = {};
    const game = new Phaser.Game({ type: Phaser.CANVAS, width: 32, height: 32, banner: false, audio: { noAudio: true },
      scene: {
        preload() {
          this.load.on("loaderror", (file) => reject(new Error("Phaser could not load " + file.src)));
          for (const s of sheets) this.load.atlas(s, "/assets/" + s + ".png", "/assets/" + s + ".json");
        },
        create() {
          for (const s of sheets) {
            const texture = this.textures.get(s);
            out[s] = texture.getFrameNames().map((name) => {
              const f = texture.get(name);
              return { name, x: f.cutX, y: f.cutY, w: f.cutWidth, h: f.cutHeight, width: f.width, height: f.height,
                       pixels: framePixels(texture.getSourceImage(), f.cutX, f.cutY, f.cutWidth, f.cutHeight) };
            });
          }
          resolve(out);
        } } });
  });
}
async function pixi(all) {
  let sheets;
  const out = {}, cache = {};
  sheets = [];                                         // PixiJS reads the JSON (hash) layout only
  for (const s of all) if (!Array.isArray((await (await fetch("/assets/" + s + ".json")).json()).frames)) sheets.push(s);
  for (const s of sheets) {
    const sheet = await PIXI.Assets.load("/assets/" + s + ".json");
    out[s] = Object.entries(sheet.textures).map(([name, t]) => ({ name, x: t.frame.x, y: t.frame.y,
      w: t.frame.width, h: t.frame.height, width: t.width, height: t.height,
      pixels: framePixels(t.source.resource, t.frame.x, t.frame.y, t.frame.width, t.frame.height) }));
  }
  for (const s of sheets) {                            // after every sheet is loaded: who owns each name?
    const sheet = PIXI.Assets.get("/assets/" + s + ".json");
    for (const name of Object.keys(sheet.textures)) {
      const owner = sheets.find((o) => Object.values(PIXI.Assets.get("/assets/" + o + ".json").textures)
        .includes(PIXI.Assets.get(name)));
      cache[name] = owner ?? null;
    }
  }
  return { sheets: out, cache };
}
</script>`;

const server = createServer((req, res) => {
  const url = decodeURIComponent(req.url.split("?")[0]);
  let path = files[url];
  if (url === "/") { res.writeHead(200, { "content-type": "text/html" }); return res.end(page); }
  if (!path && url.startsWith("/assets/")) path = join(assets, normalize(url.slice(8)).replace(/^(\.\.[/\\])+/, ""));
  if (!path || !existsSync(path)) { res.writeHead(404); return res.end(); }
  res.writeHead(200, { "content-type": types[extname(path)] || "application/octet-stream" });
  res.end(readFileSync(path));
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox", "--disable-gpu",
  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"] });
try {
  const tab = await browser.newPage();
  const errors = [];
  tab.on("pageerror", (e) => errors.push(String(e)));
  await tab.goto(`http://127.0.0.1:${server.address().port}/`);
  const result = {
    phaser: await tab.evaluate((s) => phaser(s), sheets),
    pixi: await tab.evaluate((s) => pixi(s), sheets),
    versions: await tab.evaluate(() => ({ phaser: Phaser.VERSION, pixi: PIXI.VERSION })),
    errors,
  };
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
  server.close();
}
