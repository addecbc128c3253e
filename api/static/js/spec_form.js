/**
 * The spec form: renderSpecForm(container, model, schema, choices) builds one field per value of the model
 * (the spec JSON being edited, e.g. the API's defaults), grouped in fieldsets as the spec nests, with
 * an editor for the network's layers; schema is a SpecSchema. Each control writes its parsed value
 * back into the model in place, so the model is always the spec the form shows (values that do not
 * parse stay as typed, for the API to reject beside the field). Each control has
 * data-field="spec.PATH" and each field an empty data-error-for="spec.PATH" slot for the API's
 * validation errors (PATH as the API names fields: training.epochs, network.layers[0].units).
 * choices ({PATH: [values]}) narrows an enum field to the values that can run (the device select to
 * the devices of GET /v1/capabilities); a model value outside them stays, shown as a disabled option.
 */

import { el } from "./dom.js";
import { bounds } from "./spec_schema.js";

const LEGENDS = { hm2bp: "HM2-BP switches", network: "network" };
/** A new layer of each type, as the layer editor adds it. */
const LAYER_TEMPLATES = {
  dense: { type: "dense", units: 100, threshold: 10.0, init_range: 1.0 },
  conv: { type: "conv", channels: 12, kernel: 5, stride: 1, padding: 0, threshold: 10.0, init_range: 0.5 },
  pool: { type: "pool", size: 2, threshold: 0.75 },
};

export function renderSpecForm(container, model, schema, choices = {}) {
  container.replaceChildren(...fields({ schema, choices }, model, schema.root, ""));
}

/** The fields of the object at path (its schema: node): a fieldset per nested object, the layer editor for layers. */
function fields(form, object, node, path) {
  const { schema } = form;
  const properties = schema.properties(node);
  return Object.entries(object).map(([key, value]) => {
    const childPath = path ? `${path}.${key}` : key;
    const childNode = properties[key] || {};
    if (key === "layers" && Array.isArray(value)) return layersEditor(form, value, childPath);
    if (value && typeof value === "object" && !Array.isArray(value)) {
      return el("fieldset", { class: key === "network" ? "wide" : null },
        el("legend", { text: LEGENDS[key] || key.replace(/_/g, " ") }), ...fields(form, value, childNode, childPath));
    }
    return field(form, childPath, childNode, value, (v) => { object[key] = v; });
  });
}

/** The layers array at path: a fieldset per layer, and a button that adds a hidden layer before the output one. */
function layersEditor(form, layers, path) {
  const box = el("div", { class: "layers" });
  const redraw = () => box.replaceChildren(...layers.map((_, k) => layerFieldset(form, layers, k, path, redraw)));
  redraw();
  const add = el("button", { type: "button", class: "button", text: "+ hidden layer",
    onclick: () => { layers.splice(Math.max(0, layers.length - 1), 0, { ...LAYER_TEMPLATES.dense }); redraw(); } });
  return el("fieldset", { class: "wide" }, el("legend", { text: "network layers" }), box,
    el("div", { class: "tools" }, add), el("p", { class: "field-error", "data-error-for": `spec.${path}` }));
}

/**
 * Layer k: its type (changing it replaces the layer by that type's template), a remove button
 * (disabled for the last layer left), and its fields.
 */
function layerFieldset(form, layers, k, path, redraw) {
  const layer = layers[k];
  const { schema } = form;
  const typeSelect = el("select", { "aria-label": `layer ${k + 1} type`, "data-field": `spec.${path}[${k}].type` },
    ...Object.keys(LAYER_TEMPLATES).map((t) => el("option", { value: t, text: t })));
  typeSelect.value = layer.type || "dense";
  typeSelect.addEventListener("change", () => { layers[k] = { ...LAYER_TEMPLATES[typeSelect.value] }; redraw(); });
  const remove = el("button", { type: "button", class: "button ghost", text: "remove", title: "remove this layer",
    onclick: () => { layers.splice(k, 1); redraw(); } });
  if (layers.length === 1) remove.disabled = true;
  const properties = schema.layer(layer).properties || {};
  const rows = Object.entries(layer).filter(([key]) => key !== "type")
    .map(([key, value]) => field(form, `${path}[${k}].${key}`, properties[key] || {}, value, (v) => { layer[key] = v; }));
  return el("fieldset", {},
    el("legend", { text: k === layers.length - 1 ? `layer ${k + 1} (output)` : `layer ${k + 1}` }),
    el("div", { class: "layer-head" }, typeSelect, remove), ...rows,
    el("p", { class: "field-error", "data-error-for": `spec.${path}[${k}]` }));
}

/**
 * One field: its label, the control for its kind (set receives each new value) and its error slot;
 * the schema's description and bounds as its tooltip.
 */
function field(form, path, node, value, set) {
  const { schema, choices } = form;
  const id = `f-${path.replace(/[^a-z0-9]+/gi, "-")}`;
  let kind = schema.fieldKind(node, value);
  if (kind.kind === "enum" && choices[path]) kind = { kind: "enum", values: choices[path] };
  const control = makeControl(kind, id, value, set);
  control.dataset.field = `spec.${path}`;
  const resolved = schema.resolve(node);
  const help = [resolved.description, bounds(resolved)].filter(Boolean).join(" · ");
  return el("div", { class: "row", title: help },
    el("label", { for: id, text: path.split(".").pop().replace(/\[\d+\]$/, "").replace(/_/g, " ") }),
    control, el("p", { class: "field-error", "data-error-for": `spec.${path}` }));
}

function makeControl(kind, id, value, set) {
  if (kind.kind === "boolean") {
    const box = el("input", { type: "checkbox", id });
    box.checked = Boolean(value);
    box.addEventListener("change", () => set(box.checked));
    return box;
  }
  if (kind.kind === "enum") {
    const select = el("select", { id }, ...kind.values.map((v) => el("option", { value: String(v), text: String(v) })));
    if (!kind.values.map(String).includes(String(value))) {
      select.append(el("option", { value: String(value), text: `${value} (not available here)`, disabled: true }));
    }
    select.value = String(value);
    select.addEventListener("change", () => set(select.value));
    return select;
  }
  const input = el("input", { type: kind.kind === "number" ? "number" : "text", id, step: kind.integer ? "1" : "any",
    placeholder: kind.nullable ? "none" : "" });
  input.value = toText(kind, value);
  input.addEventListener("input", () => set(fromText(kind, input.value.trim())));
  return input;
}

/** A value as a text box shows it: "" for null, JSON for a json field. */
function toText(kind, value) {
  if (value === null || value === undefined) return "";
  return kind.kind === "json" ? JSON.stringify(value) : String(value);
}

/** A text box's trimmed text as its value: null if empty and nullable, a number, parsed JSON, else the text. */
function fromText(kind, raw) {
  if (raw === "" && kind.nullable) return null;
  if (kind.kind === "number") return raw === "" ? raw : Number(raw);
  if (kind.kind === "json") { try { return JSON.parse(raw); } catch { return raw; } }
  return raw;
}
