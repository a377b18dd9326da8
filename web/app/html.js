// htm bound to Preact's h: tagged templates instead of JSX, so the sources need no compiler.
import { h } from "preact";
import htm from "htm";

/** Preact elements from a tagged template. */
export const html = htm.bind(h);
