// Builds the web client into web/dist: app/main.js bundled and minified to dist/app.js,
// app/style.css to dist/app.css, app/index.html copied. chatd embeds dist/ in its binary, so
// the bundle is committed; `--check` builds in memory and fails when dist/ is not what the
// sources build to (CI runs it, so a stale bundle never ships).
import * as esbuild from "esbuild";
import { readFileSync, writeFileSync, mkdirSync, existsSync, readdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const app = join(here, "app");
const dist = join(here, "dist");
const check = process.argv.includes("--check");

/** The same options every time, so the same sources give the same bytes. */
const common = {
  bundle: true,
  minify: true,
  write: false,
  sourcemap: false,
  legalComments: "none",
  logLevel: "warning",
  absWorkingDir: here,
};

async function build() {
  const js = await esbuild.build({
    ...common,
    entryPoints: [join(app, "main.js")],
    outfile: join(dist, "app.js"),
    format: "esm",
    platform: "browser",
    target: "es2020",
    define: { "process.env.NODE_ENV": '"production"', global: "globalThis" },
  });
  const css = await esbuild.build({
    ...common,
    entryPoints: [join(app, "style.css")],
    outfile: join(dist, "app.css"),
    loader: { ".css": "css" },
  });
  const files = new Map();
  for (const f of [...js.outputFiles, ...css.outputFiles]) {
    files.set(f.path.slice(dist.length + 1), Buffer.from(f.contents));
  }
  files.set("index.html", readFileSync(join(app, "index.html")));
  return files;
}

const files = await build();
if (check) {
  const problems = [];
  for (const [name, bytes] of files) {
    const path = join(dist, name);
    if (!existsSync(path)) problems.push(`missing: web/dist/${name}`);
    else if (!readFileSync(path).equals(bytes)) problems.push(`differs: web/dist/${name}`);
  }
  const extra = existsSync(dist)
    ? readdirSync(dist).filter((n) => !files.has(n) && !n.startsWith(".") && !n.endsWith(".map"))
    : [];
  for (const n of extra) problems.push(`not built from the sources: web/dist/${n}`);
  if (problems.length) {
    console.error(
      `web/dist is not what web/app builds to:\n  ${problems.join("\n  ")}\n` +
        "Run `node build.mjs` in web/ and commit web/dist.",
    );
    process.exit(1);
  }
  console.log(`web/dist is up to date (${files.size} files)`);
} else {
  mkdirSync(dist, { recursive: true });
  for (const [name, bytes] of files) writeFileSync(join(dist, name), bytes);
  const size = (n) => `${n} ${files.get(n).length} B`;
  console.log(`built web/dist: ${[...files.keys()].map(size).join(", ")}`);
}
