// The client's events, held while `connect()` has not handed the client out yet, so that what
// arrives during the first connect (queued messages, acks of resent sends) reaches handlers the
// application attaches right after `await connect()`.

/** A tiny event emitter whose emits can be held and replayed in order. */
export class Emitter {
  constructor() {
    this.handlers = new Map();
    this.held = [];
    this.holding = true;
  }

  on(event, handler) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(handler);
    return () => this.off(event, handler);
  }

  off(event, handler) {
    this.handlers.get(event)?.delete(handler);
  }

  emit(event, ...args) {
    if (this.holding) {
      this.held.push([event, args]);
      return;
    }
    for (const h of [...(this.handlers.get(event) || [])]) {
      try {
        h(...args);
      } catch (e) {
        // A throwing handler must not break the connection's message loop.
        setTimeout(() => {
          throw e;
        }, 0);
      }
    }
  }

  /** Stops holding: replays what was held, then emits directly. */
  release() {
    this.holding = false;
    const held = this.held;
    this.held = [];
    for (const [event, args] of held) this.emit(event, ...args);
  }
}
