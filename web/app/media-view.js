// The body of a media message: an image over its preview, a video or voice-note player, or a
// file with its name and size. The URL comes from `media.download` (cached by the store).
import { html } from "./html.js";
import { Icon } from "./icons.js";
import { fileSize, duration } from "./format.js";

/** The media of message `m`. */
export function MediaView({ store, m }) {
  const info = store.media(m.media);
  if (info?.failed) return html`<div class="media-error" data-testid="media-error">Media unavailable</div>`;
  switch (m.type) {
    case "image":
      return html`<${ImageView} info=${info} />`;
    case "video":
      return info
        ? html`<video class="video" data-testid="message-video" controls preload="metadata" src=${info.url}
            style=${ratio(info)}></video>`
        : html`<div class="media-loading">Video…</div>`;
    case "audio":
      return html`<div class="voice">
        ${info ? html`<audio data-testid="message-audio" controls preload="metadata" src=${info.url}></audio>` : "Voice message…"}
        ${info?.duration ? html`<span class="muted">${duration(info.duration)}</span>` : null}
      </div>`;
    default:
      return html`<a class="file" data-testid="message-file" href=${info?.url} target="_blank" rel="noopener"
          download=${info?.name || true}>
        <span class="file-icon"><${Icon} name="file" size="1.8em" /></span>
        <span><span class="file-name">${info?.name || "File"}</span>
        <span class="muted file-size">${info ? fileSize(info.size) : ""}</span></span>
      </a>`;
  }
}

function ratio(info) {
  return info?.width && info?.height ? `aspect-ratio:${info.width}/${info.height}` : "";
}

/** The full image on top of its small preview, in a box of the image's shape. */
function ImageView({ info }) {
  const w = info?.width;
  const style = `${ratio(info) || "aspect-ratio:4/3"};${w ? `max-width:min(100%, ${w}px)` : ""}`;
  return html`
    <a class="image" href=${info?.url} target="_blank" rel="noopener" style=${style}>
      ${info?.preview && html`<img class="preview" data-testid="message-preview" src=${info.preview} alt="" />`}
      ${info?.url && html`<img class="full" data-testid="message-image" src=${info.url} alt="Photo" />`}
    </a>
  `;
}
