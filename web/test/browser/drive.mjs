// Drive the page in headless Chromium (playwright-core, Debian's chromium): open each URL given, wait
// for window.ddpmEdge.done, print one JSON line per URL with window.ddpmEdge (+ console errors).
// A URL given as URL@@FILE gets FILE put into the page's file input (as a user picking a model or a
// sheet), then its Generate button pressed.
//   node test/browser/drive.mjs URL… [--timeout SECONDS]     CHROMIUM=/path/to/chromium to override
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
const t = args.indexOf("--timeout");
const timeout = t >= 0 ? Number(args.splice(t, 2)[1]) * 1000 : 600_000;
const executablePath = process.env.CHROMIUM || ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);
if (!executablePath) { console.error("drive.mjs: no chromium found (set CHROMIUM)"); process.exit(3); }
const profile = mkdtempSync(join(tmpdir(), "ddpm-edge-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run"],
});
try {
  for (const arg of args) {
    const [url, upload] = arg.split("@@");
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e.message).split("\n")[0]));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text().split("\n")[0]); });
    await page.goto(url);
    if (upload) {
      await page.waitForFunction(() => document.getElementById("status").textContent === "ready", null, { timeout });
      await page.setInputFiles("#model-file", upload);
      await page.click("#generate");
    }
    await page.waitForFunction(() => window.ddpmEdge && window.ddpmEdge.done, null, { timeout, polling: 250 });
    const result = await page.evaluate(() => ({ ...window.ddpmEdge, crossOriginIsolated: globalThis.crossOriginIsolated }));
    console.log(JSON.stringify({ url, ...result, consoleErrors: errors }));
    await page.close();
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
