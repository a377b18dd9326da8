// The web client's entry point: renders the app into #app.
import { render } from "preact";
import { html } from "./html.js";
import { Login } from "./login.js";

render(html`<${Login} />`, document.getElementById("app"));
