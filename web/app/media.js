// What the client learns from a file before it uploads it: the message type it goes as, the
// size of an image or video, a small JPEG preview, the length of a recording.

const IMAGE = ["image/jpeg", "image/png", "image/gif", "image/webp", "image/heic"];
const VIDEO = ["video/mp4", "video/quicktime", "video/webm", "video/3gpp"];
const AUDIO = ["audio/mpeg", "audio/mp4", "audio/aac", "audio/ogg", "audio/opus", "audio/webm", "audio/wav"];

/** A MIME type without parameters, lowercase (what `media.upload` takes). */
export function baseMime(type) {
  return (type || "application/octet-stream").split(";")[0].trim().toLowerCase();
}

/** The message type a file is sent as: the server's default kinds, else `file`. */
export function kindOf(mime) {
  const m = baseMime(mime);
  if (IMAGE.includes(m)) return "image";
  if (VIDEO.includes(m)) return "video";
  if (AUDIO.includes(m)) return "audio";
  return "file";
}

/** The largest edge of a preview, and the most a preview's data URL may take. */
const PREVIEW_EDGE = 96;
const PREVIEW_MAX_CHARS = 12_000;

/** Width, height and a small JPEG data URL of an image file; `{}` when the browser cannot
 * decode it (HEIC in most browsers): the image is then sent without them. */
export async function imageMeta(file) {
  const url = URL.createObjectURL(file);
  try {
    const img = await loaded(url);
    const width = img.naturalWidth;
    const height = img.naturalHeight;
    return { width, height, preview: preview(img, width, height) };
  } catch {
    return {};
  } finally {
    URL.revokeObjectURL(url);
  }
}

function loaded(url) {
  return new Promise((ok, fail) => {
    const img = new Image();
    img.onload = () => ok(img);
    img.onerror = () => fail(new Error("cannot decode the image"));
    img.src = url;
  });
}

/** Draws the image small and encodes it as JPEG, lowering size and quality until it fits. */
function preview(img, width, height) {
  if (!width || !height) return undefined;
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d");
  for (const [edge, quality] of [[PREVIEW_EDGE, 0.6], [64, 0.5], [40, 0.4]]) {
    const scale = Math.min(1, edge / Math.max(width, height));
    canvas.width = Math.max(1, Math.round(width * scale));
    canvas.height = Math.max(1, Math.round(height * scale));
    ctx.fillStyle = "#fff"; // transparent PNG areas turn white, not black
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    const data = canvas.toDataURL("image/jpeg", quality);
    if (data.length <= PREVIEW_MAX_CHARS) return data;
  }
  return undefined;
}

/** Width, height and duration (ms) of a video file, or `{}` when unknown. */
export function videoMeta(file) {
  const url = URL.createObjectURL(file);
  const video = document.createElement("video");
  video.preload = "metadata";
  return new Promise((ok) => {
    const done = (meta) => {
      clearTimeout(timer);
      URL.revokeObjectURL(url);
      ok(meta);
    };
    const timer = setTimeout(() => done({}), 5000);
    video.onloadedmetadata = () => {
      const meta = { width: video.videoWidth || undefined, height: video.videoHeight || undefined };
      if (Number.isFinite(video.duration)) meta.duration = Math.round(video.duration * 1000);
      done(meta);
    };
    video.onerror = () => done({});
    video.src = url;
  });
}

/** Everything `media.upload` is told about a file. */
export async function metaOf(file, kind) {
  const meta = { mime: baseMime(file.type), name: file.name || undefined };
  if (kind === "image") Object.assign(meta, await imageMeta(file));
  if (kind === "video") Object.assign(meta, await videoMeta(file));
  return meta;
}

/** Whether this browser can record voice notes. */
export function canRecord() {
  return Boolean(window.MediaRecorder && navigator.mediaDevices?.getUserMedia);
}

/** Starts recording from the microphone; `stop()` resolves with `{blob, duration}`,
 * `cancel()` throws the recording away. */
export async function startRecording() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const type = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4", "audio/webm"].find(
    (t) => MediaRecorder.isTypeSupported?.(t),
  );
  const rec = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
  const chunks = [];
  const started = Date.now();
  rec.ondataavailable = (e) => e.data.size && chunks.push(e.data);
  rec.start();
  const release = () => stream.getTracks().forEach((t) => t.stop());
  return {
    stop: () =>
      new Promise((ok) => {
        rec.onstop = () => {
          release();
          const mime = baseMime(rec.mimeType || type || "audio/webm");
          ok({ blob: new Blob(chunks, { type: mime }), duration: Date.now() - started });
        };
        rec.stop();
      }),
    cancel: () => {
      rec.onstop = release;
      rec.stop();
    },
  };
}
