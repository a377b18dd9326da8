// Media: download URLs and what the uploader told (cached while valid), and files sent.
import { describe } from "./errors.js";
import { kindOf, metaOf } from "./media.js";

/** Store methods (mixed into Store): media shown and sent. */
export const mediaMethods = {
  /** What `media.download` says about `media` (cached while its URL is valid): null while it is
   * being fetched, `{failed}` (the reason) when it could not be. */
  media(id) {
    const info = this.mediaInfo.get(id);
    if (info && (info.loading || info.failed || info.expires > Date.now() + 30_000)) return info.loading ? null : info;
    this.mediaInfo.set(id, { loading: true });
    this.client.media
      .download(id)
      .then((i) => this.mediaInfo.set(id, i))
      .catch((e) => this.mediaInfo.set(id, { failed: describe(e) }))
      .finally(() => this.changed());
    return null;
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
