// The web client's entry point: one store, the app rendered into #app, and a saved login
// resumed.
import { render } from "preact";
import { html } from "./html.js";
import { App } from "./app.js";
import { Store } from "./store.js";

const store = new Store();
render(html`<${App} store=${store} />`, document.getElementById("app"));
store.resume();
