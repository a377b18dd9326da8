// chatd JavaScript SDK: chat over MQTT 5 on WebSocket (MQTT.js), for browsers and node.
// The API is declared in index.d.ts; the wire protocol is docs/protocol.md.
export { ChatError } from "./errors.js";
export { login, connect } from "./client.js";
export { indexedDbOutbox, memoryOutbox } from "./outbox.js";
export { tabDeviceId } from "./device.js";
