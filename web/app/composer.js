// Where a message is written: text (Enter sends, Shift+Enter is a new line), a file or photo to
// attach, and a voice note recorded with the microphone where the browser can.
import { useState, useRef, useEffect } from "preact/hooks";
import { html } from "./html.js";
import { Icon } from "./icons.js";
import { canRecord, startRecording } from "./media.js";
import { duration } from "./format.js";
import { describe } from "./errors.js";

/** The composer of chat `chatKey`. */
export function Composer({ store, chatKey }) {
  const [text, setText] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [recording, setRecording] = useState(null);
  const [, setTick] = useState(0);
  const input = useRef(null);

  useEffect(() => {
    setText("");
    setError("");
    input.current?.focus();
  }, [chatKey]);

  useEffect(() => {
    if (!recording) return undefined;
    const t = setInterval(() => setTick((n) => n + 1), 500);
    return () => clearInterval(t);
  }, [recording]);

  function send(e) {
    e?.preventDefault();
    const body = text.trim();
    if (!body) return;
    setText("");
    store.send(chatKey, { type: "text", text: body });
    input.current?.focus();
  }

  function keyDown(e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e);
  }

  async function attach(e) {
    const files = [...e.currentTarget.files];
    e.currentTarget.value = "";
    await upload(files.map((f) => [f, {}]));
  }

  async function upload(items) {
    setBusy(true);
    setError("");
    try {
      for (const [file, opts] of items) await store.sendFile(chatKey, file, opts);
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  }

  async function record() {
    setError("");
    try {
      setRecording({ rec: await startRecording(), started: Date.now() });
    } catch (err) {
      setError(`Cannot record: ${describe(err)}`);
    }
  }

  async function stopRecording(keep) {
    const { rec } = recording;
    setRecording(null);
    if (!keep) return rec.cancel();
    const { blob, duration: ms } = await rec.stop();
    const ext = blob.type.split("/")[1] || "webm";
    const file = new File([blob], `voice-${Date.now()}.${ext}`, { type: blob.type });
    await upload([[file, { duration: ms }]]);
  }

  if (recording) {
    return html`<div class="composer recording" data-testid="recording">
      <span class="rec-dot"></span>
      <span class="grow">Recording ${duration(Date.now() - recording.started)}</span>
      <button type="button" class="ghost" onClick=${() => stopRecording(false)}>Cancel</button>
      <button type="button" data-testid="recording-send" onClick=${() => stopRecording(true)}>Send</button>
    </div>`;
  }

  return html`
    ${error && html`<div class="error composer-error" data-testid="composer-error">${error}</div>`}
    <form class="composer" onSubmit=${send}>
      <label class="icon-button" title="Attach a photo, video or file">
        <input type="file" data-testid="attach-input" multiple hidden onChange=${attach} disabled=${busy} />
        ${busy ? html`<span class="spinner"></span>` : html`<${Icon} name="clip" />`}
      </label>
      <textarea ref=${input} rows="1" data-testid="composer-input" placeholder="Message"
        value=${text} onKeyDown=${keyDown}
        onInput=${(e) => {
          setText(e.currentTarget.value);
          if (e.currentTarget.value) store.typing(chatKey);
        }}></textarea>
      ${!text.trim() && canRecord()
        ? html`<button type="button" class="icon-button" data-testid="record-voice" title="Record a voice message"
            onClick=${record}><${Icon} name="mic" /></button>`
        : html`<button data-testid="composer-send" disabled=${!text.trim()}>Send</button>`}
    </form>
  `;
}
