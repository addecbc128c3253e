/**
 * The submit page (#/submit): a dataset (chosen, or uploaded here), a job name, and the spec, edited
 * as a form built from the API's defaults and JSON schema (GET /v1/spec) or as JSON. POST /v1/jobs'
 * validation errors appear beside the fields they name; the page then opens the new job.
 */

import { api } from "../api.js";
import { $, el } from "../dom.js";
import { renderSpecForm } from "../spec_form.js";
import { SpecSchema } from "../spec_schema.js";
import { mount, onLeave } from "../view.js";

export function showSubmit() {
  mount("tpl-submit");
  document.title = "New job · hm2bp";
  // schema: a SpecSchema; defaults: the paper's spec; model: the spec being edited in the form
  const page = { schema: null, defaults: null, model: null, jsonMode: false, alive: true };
  onLeave(() => { page.alive = false; });
  $("#spec-mode").addEventListener("click", () => setJsonMode(page, !page.jsonMode));
  $("#spec-reset").addEventListener("click", () => resetSpec(page));
  $("#upload-button").addEventListener("click", uploadDataset);
  $("#submit-form").addEventListener("submit", (event) => submitJob(event, page));
  loadSpec(page);
}

/** Fetches the spec's schema and defaults (and the datasets), then shows the defaults in the form. */
async function loadSpec(page) {
  try {
    const [info] = await Promise.all([api("/v1/spec"), loadDatasets()]);
    if (!page.alive) return;
    page.schema = new SpecSchema(info.json_schema);
    page.defaults = info.defaults;
    page.model = structuredClone(page.defaults);
    renderForm(page);
  } catch (error) {
    $("#submit-error").textContent = `Could not load the spec defaults: ${error.message}`;
  }
}

function renderForm(page) {
  renderSpecForm($("#spec-form"), page.model, page.schema);
}

/**
 * Fills the dataset choice from GET /v1/datasets, selecting the dataset with id selected if given.
 * A built-in the service cannot use yet is listed but disabled; the note under the choice says why
 * (or, for one its first job downloads, that it will).
 */
async function loadDatasets(selected) {
  const list = await api("/v1/datasets");
  const select = $("#job-dataset");
  const notes = new Map(list.items.map((d) => [d.id, d.note]));
  select.replaceChildren(...list.items.map((d) => el("option", {
    value: d.id, text: datasetLabel(d), disabled: !d.available, title: d.note,
  })));
  if (selected) select.value = selected;
  const showNote = () => {
    const note = $("#job-dataset-note");
    note.textContent = notes.get(select.value) || "";
    note.hidden = !note.textContent;
  };
  select.onchange = showNote;
  showNote();
}

function datasetLabel(d) {
  const shape = d.input_shape.join("×") + (d.time_steps ? ` × ${d.time_steps} steps` : "");
  return `${d.name} — ${d.num_train} train / ${d.num_test} test, ${d.num_classes} classes, ${shape}`
    + (d.format === "builtin" ? (d.available ? " (built-in)" : " (built-in, not on this service)") : "");
}

/** Switches between the form and the JSON editor; leaving the editor needs valid JSON, which becomes the model. */
function setJsonMode(page, on) {
  if (on) fillJsonEditor(page.model);
  else {
    const model = editedJson();
    if (model === undefined) return;
    page.model = model;
    renderForm(page);
  }
  page.jsonMode = on;
  $("#spec-json").hidden = !on;
  $("#spec-form").hidden = on;
  $("#spec-mode").textContent = on ? "Edit as form" : "Edit as JSON";
  $('[data-error-for="spec"]').textContent = "";
}

/** Back to the paper's defaults, in whichever editor is shown. */
function resetSpec(page) {
  page.model = structuredClone(page.defaults);
  if (page.jsonMode) fillJsonEditor(page.model);
  else renderForm(page);
}

function fillJsonEditor(model) {
  $("#spec-json").value = JSON.stringify(model, null, 2);
}

/** The JSON editor's spec, or undefined (with the parse error under the spec) if it is not valid JSON. */
function editedJson() {
  try {
    return JSON.parse($("#spec-json").value);
  } catch (error) {
    $('[data-error-for="spec"]').textContent = `Not valid JSON: ${error.message}`;
    return undefined;
  }
}

/** POST /v1/datasets with the chosen file (and name), then selects the new dataset. */
async function uploadDataset() {
  const file = $("#upload-file").files[0];
  const button = $("#upload-button");
  $("#upload-error").textContent = "";
  if (!file) { $("#upload-error").textContent = "Choose a file first."; return; }
  const body = new FormData();
  body.append("file", file);
  const name = $("#upload-name").value.trim();
  if (name) body.append("name", name);
  button.disabled = true;
  button.textContent = "Uploading…";
  try {
    const dataset = await api("/v1/datasets", { method: "POST", body });
    await loadDatasets(dataset.id);
    $("#upload-error").textContent = "";
  } catch (error) {
    $("#upload-error").textContent = error.message;
  } finally {
    button.disabled = false;
    button.textContent = "Upload";
  }
}

/**
 * POST /v1/jobs with the dataset, the spec of the editor shown, and the name if any; then opens the
 * job, or shows the API's errors.
 */
async function submitJob(event, page) {
  event.preventDefault();
  clearErrors();
  const spec = page.jsonMode ? editedJson() : page.model;
  if (spec === undefined) return;
  const body = { dataset: $("#job-dataset").value, spec };
  const name = $("#job-title").value.trim();
  if (name) body.name = name;
  $("#submit-button").disabled = true;
  try {
    const job = await api("/v1/jobs", { method: "POST", json: body });
    location.hash = `#/jobs/${job.id}`;
  } catch (error) {
    showErrors(error, page.jsonMode);
  } finally {
    $("#submit-button").disabled = false;
  }
}

function clearErrors() {
  for (const node of document.querySelectorAll("[data-error-for]")) node.textContent = "";
  for (const node of document.querySelectorAll(".invalid")) node.classList.remove("invalid");
  $("#submit-error").textContent = "";
}

/**
 * Puts each of an ApiError's field errors in the slot of its field, or of the nearest enclosing field
 * on the page (spec.network.layers[2].units, then spec.network.layers[2], ...), and marks the control
 * invalid; in JSON mode every spec error goes under the JSON editor. Errors without a slot go under
 * the submit button.
 */
function showErrors(error, jsonMode) {
  const unplaced = [];
  for (const item of error.errors.length ? error.errors : [{ field: "", message: error.message }]) {
    let field = item.field || "";
    let slot = null;
    while (field && !(slot = document.querySelector(`[data-error-for="${CSS.escape(field)}"]`))) {
      field = field.includes(".") || field.includes("[") ? field.replace(/(\.[^.[\]]+|\[-?\d+\])$/, "") : "";
    }
    if (jsonMode && field.startsWith("spec")) slot = document.querySelector('[data-error-for="spec"]');
    if (!slot) { unplaced.push(item.message); continue; }
    slot.textContent = slot.textContent ? `${slot.textContent}\n${item.message}` : item.message;
    const control = document.querySelector(`[data-field="${CSS.escape(field)}"]`);
    if (control) { control.classList.add("invalid"); control.scrollIntoView({ block: "center", behavior: "smooth" }); }
  }
  $("#submit-error").textContent = unplaced.join("\n");
}
