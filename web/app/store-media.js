// Media: download URLs and what the uploader told (cached while valid), and files sent.
import { describe } from "./errors.js";
import { kindOf, metaOf } from "./media.js";

/** Store methods (mixed into Store): media shown and sent. */
export const mediaMethods = {
  /** What `media.download` says about `media`: null until it is known, `{failed}` (the reason)
   * when it cannot be (forbidden, not found). A URL close to its expiry is asked for again, and
   * the old answer is used meanwhile (what it showed is loaded already). */
  media(id) {
    const info = this.mediaInfo.get(id);
    const fresh = info && (info.failed || info.expires > Date.now() + 30_000 || info.retryAt > Date.now());
    if (fresh || this.mediaAsked.has(id)) return info?.url || info?.failed ? info : null;
    this.mediaAsked.add(id);
    // An answer for a map that was replaced meanwhile (logout) is dropped.
    const map = this.mediaInfo;
    const asked = this.mediaAsked;
    this.client.media
      .download(id)
      .then((i) => {
        if (map === this.mediaInfo) this.setMediaInfo(id, i);
      })
      .catch((e) => {
        if (map !== this.mediaInfo) return;
        // Only a final answer fails the media; anything else keeps the old answer (if any) and
        // asks again shortly, not on every render.
        const final = e?.code === "forbidden" || e?.code === "not_found";
        if (final) this.setMediaInfo(id, { failed: describe(e) });
        else this.setMediaInfo(id, { ...(info || {}), retryAt: Date.now() + 30_000 });
      })
      .finally(() => {
        asked.delete(id);
        if (map === this.mediaInfo) this.changed();
      });
    return info || null;
  },

  /** Sets what is known about `id`; a local object URL it replaces is revoked. */
  setMediaInfo(id, info) {
    const old = this.mediaInfo.get(id);
    if (old?.local && old.url !== info.url) URL.revokeObjectURL(old.url);
    this.mediaInfo.set(id, info);
  },

  /** The message carrying `id` was acknowledged: the server's URL is asked for at the next
   * render (the local one shows meanwhile and is revoked once it is replaced). */
  mediaSent(id) {
    const info = this.mediaInfo.get(id);
    if (info?.local) info.expires = 0;
  },

  /** Revokes every local object URL (logout). */
  revokeLocalMedia() {
    for (const info of this.mediaInfo?.values() || []) if (info.local) URL.revokeObjectURL(info.url);
  },

  /** Uploads a file (or recording) and sends it as the message type its MIME type calls for. */
  async sendFile(key, file, { caption, duration } = {}) {
    const kind = kindOf(file.type);
    const localUrl = URL.createObjectURL(file);
    try {
      const meta = await metaOf(file, kind);
      if (duration) meta.duration = duration;
      const { media } = await this.client.media.upload(file, meta);
      this.setMediaInfo(media, { ...meta, media, url: localUrl, local: true, size: file.size, expires: Infinity });
      const fields = { type: kind, media };
      if (caption) fields.text = caption;
      await this.send(key, fields);
    } catch (e) {
      URL.revokeObjectURL(localUrl);
      throw e;
    }
  },
};
