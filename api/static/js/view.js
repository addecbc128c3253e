/**
 * The current view, in <main id="view">: mount(templateId) replaces it with a copy of a <template>;
 * onLeave(stop) registers what stops the view's timers and sockets; leave() runs those (once) before
 * the router shows the next view.
 */

const main = document.getElementById("view");
let stops = [];

export function mount(templateId) {
  main.replaceChildren(document.getElementById(templateId).content.cloneNode(true));
}

export function onLeave(stop) {
  stops.push(stop);
}

export function leave() {
  stops.forEach((stop) => stop());
  stops = [];
}
