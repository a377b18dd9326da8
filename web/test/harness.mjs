// A real chatd for the SDK and browser tests: started from the Cargo-built binary on free
// loopback ports, in a temporary directory, with users created through the admin API. The HTTP
// port stays the same across `restart()`, so a page or a client keeps its URL.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, rmSync, openSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** The chatd binary: `CHATD_BIN`, else the workspace's debug build. */
export function chatdBin() {
  return process.env.CHATD_BIN || resolve(here, "../../target/debug/chatd");
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

const ADMIN_TOKEN = "web-tests-admin-token-0123456789abcdef";

/** Waits for `check()` to return a truthy value, polling every `everyMs`, for up to `ms`. */
export async function waitFor(check, { ms = 30000, everyMs = 50, what = "condition" } = {}) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A chatd process and what a test needs to reach it. */
export class Chatd {
  /** Starts chatd; `extraToml` is appended to the configuration (whole sections). */
  static async start(extraToml = "") {
    const c = new Chatd();
    c.dir = mkdtempSync(join(tmpdir(), "chatd-web-"));
    c.httpPort = await freePort();
    c.mqttPort = await freePort();
    c.wsPort = await freePort();
    c.extraToml = extraToml;
    c.writeConfig();
    await c.spawn();
    return c;
  }

  writeConfig() {
    const toml = [
      "[listen]",
      `mqtt = "127.0.0.1:${this.mqttPort}"`,
      `http = "127.0.0.1:${this.httpPort}"`,
      `ws = "127.0.0.1:${this.wsPort}"`,
      "",
      "[storage]",
      `path = ${JSON.stringify(join(this.dir, "data"))}`,
      "",
      "[auth]",
      `admin_token = "${ADMIN_TOKEN}"`,
      "",
      typeof this.extraToml === "function" ? this.extraToml(this) : this.extraToml,
      "",
    ].join("\n");
    writeFileSync(join(this.dir, "chatd.toml"), toml);
  }

  /** `http://127.0.0.1:{port}`: the page, `/auth/token`, media and the admin API. */
  get httpUrl() {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  /** `ws://127.0.0.1:{port}/mqtt`: MQTT over WebSocket on the HTTP listener. */
  get wsUrl() {
    return `ws://127.0.0.1:${this.httpPort}/mqtt`;
  }

  /** `ws://127.0.0.1:{port}/mqtt`: the separate `listen.ws` WebSocket listener. */
  get wsListenerUrl() {
    return `ws://127.0.0.1:${this.wsPort}/mqtt`;
  }

  async spawn() {
    const bin = chatdBin();
    if (!existsSync(bin)) throw new Error(`no chatd binary at ${bin}: run cargo build first`);
    const log = openSync(join(this.dir, "chatd.log"), "a");
    this.child = spawn(bin, ["--config", join(this.dir, "chatd.toml")], {
      cwd: this.dir,
      stdio: ["ignore", log, log],
      env: { ...process.env, CHATD_CONFIG: "" },
    });
    const exited = new Promise((r) => this.child.once("exit", (code, sig) => r({ code, sig })));
    this.exited = exited;
    let gone = null;
    exited.then((v) => (gone = v));
    await waitFor(
      async () => {
        if (gone) throw new Error(`chatd exited (${JSON.stringify(gone)}); log:\n${this.log()}`);
        const r = await fetch(`${this.httpUrl}/healthz`).catch(() => null);
        return r && r.ok;
      },
      { ms: 90000, what: "chatd /healthz" },
    ).catch((e) => {
      throw new Error(`${e.message}\n--- chatd.log ---\n${this.log()}`);
    });
  }

  /** chatd's log so far. */
  log() {
    try {
      return readFileSync(join(this.dir, "chatd.log"), "utf8");
    } catch {
      return "";
    }
  }

  /** Creates a user with a password through the admin API. */
  async addUser(user, password = `${user}-pw-123456`) {
    const r = await fetch(`${this.httpUrl}/admin/users`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ user, password }),
    });
    if (!r.ok) throw new Error(`POST /admin/users ${user}: ${r.status} ${await r.text()}`);
    return { user, password };
  }

  /** Stops the process: SIGTERM (graceful) or, with `kill: true`, SIGKILL. */
  async stop({ kill = false } = {}) {
    if (!this.child) return;
    this.child.kill(kill ? "SIGKILL" : "SIGTERM");
    await this.exited;
    this.child = null;
  }

  /** Stops and starts again on the same ports and data directory. */
  async restart(opts) {
    await this.stop(opts);
    await this.spawn();
  }

  /** Stops the process and removes its directory (keep it with KEEP_CHATD_DIR=1). */
  async close() {
    await this.stop();
    if (!process.env.KEEP_CHATD_DIR) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A unique id with `prefix`, valid as a user or device id. */
export function unique(prefix) {
  unique.n = (unique.n || 0) + 1;
  return `${prefix}${Date.now().toString(36)}${process.pid.toString(36)}${unique.n}`;
}

/** Debian's Chromium (or `CHROMIUM`), driven by playwright-core, launched as every browser test
 * needs it: no sandbox (containers), no background traffic or component updates (no internet
 * here, and nothing the tests did not ask for); `extraArgs` add to these. */
export async function launchChromium(extraArgs = []) {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", ...extraArgs],
  });
}
