// Media: download URLs and what the uploader told (cached while valid), and files sent.
import { describe } from "./errors.js";
import { kindOf, metaOf } from "./media.js";

/** Store methods (mixed into Store): media shown and sent. */
export const mediaMethods = {
  /** What `media.download` says about `media`: null until it is known, `{failed}` (the reason)
   * when it could not be. A URL close to its expiry is asked for again, and the old answer is
   * used meanwhile (what it showed is loaded already). */
  media(id) {
    const info = this.mediaInfo.get(id);
    const fresh = info && (info.failed || info.expires > Date.now() + 30_000);
    if (fresh || this.mediaAsked.has(id)) return info?.url || info?.failed ? info : null;
    this.mediaAsked.add(id);
    this.client.media
      .download(id)
      .then((i) => this.mediaInfo.set(id, i))
      // A refresh that fails keeps the old answer, and is not tried again on every render.
      .catch((e) => this.mediaInfo.set(id, info ? { ...info, expires: Infinity } : { failed: describe(e) }))
      .finally(() => {
        this.mediaAsked.delete(id);
        this.changed();
      });
    return info || null;
  },

  /** Uploads a file (or recording) and sends it as the message type its MIME type calls for. */
  async sendFile(key, file, { caption, duration } = {}) {
    const kind = kindOf(file.type);
    const localUrl = URL.createObjectURL(file);
    try {
      const meta = await metaOf(file, kind);
      if (duration) meta.duration = duration;
      const { media } = await this.client.media.upload(file, meta);
      this.mediaInfo.set(media, { ...meta, media, url: localUrl, size: file.size, expires: Infinity });
      const fields = { type: kind, media };
      if (caption) fields.text = caption;
      await this.send(key, fields);
    } catch (e) {
      URL.revokeObjectURL(localUrl);
      throw e;
    }
  },
};
