// How the web client holds up over a long conversation, measured as a user lives it: alice has
// her chat with bob open in Chromium while bob (the SDK in node) sends message after message at
// a steady rate; every `--every` messages the page's JavaScript heap (after a forced garbage
// collection) and its DOM node count are sampled, and at the end the time from bob's last send
// to its bubble on alice's screen, and whether every message was read.
//
//   cargo build -p chatd && cd web && npm ci
//   node bench/tab-memory.mjs [--messages 5000] [--rate 100] [--every 1000] [--text-bytes 120]
//
// A chatd from the tests' harness (CHATD_BIN, else target/debug/chatd) with bob's send limit
// raised to the rate. Prints one JSON line per sample and a summary.
import { parseArgs } from "node:util";
import { Chatd, waitFor, unique, launchChromium } from "../test/harness.mjs";
import { connect, memoryOutbox } from "../sdk/index.js";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "5000" },
    rate: { type: "string", default: "100" },
    every: { type: "string", default: "1000" },
    "text-bytes": { type: "string", default: "120" },
  },
});
const N = Number(values.messages);
const RATE = Number(values.rate);
const EVERY = Number(values.every);
const TEXT = "x".repeat(Math.max(1, Number(values["text-bytes"]) - 12));

const srv = await Chatd.start(
  `[limits]\nsends_per_sec = ${RATE * 2}\nsends_burst = ${RATE * 2}\nrequests_per_sec = 1000\nrequests_burst = 1000\n`,
);
const browser = await launchChromium();
try {
  const alice = await srv.addUser(unique("alice"));
  const bob = await srv.addUser(unique("bob"));
  const b = await connect({ url: srv.wsUrl, user: bob.user, password: bob.password, outbox: memoryOutbox() });
  await b.send({ to: alice.user, text: "hello" });

  const page = await (await browser.newContext()).newPage();
  page.on("pageerror", (e) => console.error("page error:", String(e)));
  page.on("console", (m) => m.type() !== "debug" && console.error(`page ${m.type()}: ${m.text()}`));
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Performance.enable");
  await page.goto(`${srv.httpUrl}/`);
  await page.getByTestId("login-user").fill(alice.user);
  await page.getByTestId("login-password").fill(alice.password);
  await page.getByTestId("login-submit").click();
  await page.locator(`[data-testid=conversation][data-chat="u:${bob.user}"]`).click({ timeout: 30000 });
  await page.locator(`[data-testid=chat-view][data-chat="u:${bob.user}"]`).waitFor({ timeout: 30000 });

  async function sample(sent) {
    await cdp.send("HeapProfiler.collectGarbage");
    const { metrics } = await cdp.send("Performance.getMetrics");
    const m = Object.fromEntries(metrics.map((x) => [x.name, x.value]));
    const shown = await page.getByTestId("message").count();
    const row = { sent, shown, heapMB: +(m.JSHeapUsedSize / 1e6).toFixed(1), domNodes: m.Nodes, listeners: m.JSEventListeners };
    console.log(JSON.stringify(row));
    return row;
  }

  const rows = [await sample(0)];
  const started = Date.now();
  let lastId = null;
  for (let i = 1; i <= N; i++) {
    // A steady rate: each send waits for its slot, not for the previous ack.
    const due = started + (i * 1000) / RATE;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const ack = b.send({ to: alice.user, text: `${String(i).padStart(8, "0")} ${TEXT}` });
    if (i === N) lastId = (await ack).id;
    if (i % EVERY === 0) rows.push(await sample(i));
  }
  const lastSent = Date.now();
  await page.locator(`[data-testid=message][data-id="${lastId}"]`).waitFor({ timeout: 60000 });
  const shownAfter = Date.now() - lastSent;
  const read = await waitFor(
    async () => {
      const h = await b.history({ with: alice.user, limit: 1 });
      return h.messages[0]?.status === "read" && h.messages[0];
    },
    { ms: 60000, what: "the last message read" },
  );
  const end = await sample(N);
  console.log(
    JSON.stringify({
      messages: N,
      rate: RATE,
      seconds: +((lastSent - started) / 1000).toFixed(1),
      lastShownAfterMs: shownAfter,
      lastRead: read.id === lastId,
      heapMB: { start: rows[0].heapMB, end: end.heapMB },
      domNodes: { start: rows[0].domNodes, end: end.domNodes },
    }),
  );
  await b.close();
} finally {
  await browser.close();
  await srv.close();
}
