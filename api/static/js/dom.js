/** DOM helpers. Whatever comes from the API enters the page through these as text, never as HTML. */

/**
 * el(tag, attrs, ...children): a new element. In attrs, "class" sets className, "text" sets textContent,
 * "onX" adds a listener for event X, anything else becomes an attribute (true: present and empty;
 * null, undefined or false: absent). Children are nodes, or values appended as text.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** The first element that matches selector under root (the document by default), or null. */
export const $ = (selector, root = document) => root.querySelector(selector);
