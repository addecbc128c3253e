/**
 * The submit page (#/submit, or #/submit?from=ID to clone job ID): a dataset (chosen, or uploaded
 * here), a job name and tags, and the spec, edited as a form built from the API's defaults and JSON
 * schema (GET /v1/spec) or as JSON. Picking a dataset resets the spec to that dataset's: its example
 * when GET /v1/spec has one (examples/digits.yaml for builtin:digits), else the paper's defaults with
 * the output layer sized to its classes (and spike input for a spike dataset). A clone starts from
 * the job's dataset, spec and tags. The device choice offers only the devices of GET
 * /v1/capabilities (cpu when the service has no such route). POST /v1/jobs' validation errors
 * appear beside the fields they name and, each with its field's path, under the Submit button; the
 * page then opens the new job.
 */

import { api } from "../api.js";
import { $, el } from "../dom.js";
import { renderSpecForm } from "../spec_form.js";
import { SpecSchema } from "../spec_schema.js";
import { mount, onLeave } from "../view.js";

const DEVICE_FIELD = "training.device";

export function showSubmit(fromJobId = null) {
  mount("tpl-submit");
  document.title = "New job · hm2bp";
  // schema: a SpecSchema; defaults: the paper's spec; examples: dataset id -> its suggested spec;
  // datasets: id -> dataset record; choices: the form's narrowed enums; model: the spec being edited
  const page = { schema: null, defaults: null, examples: {}, datasets: new Map(), choices: {}, model: null,
    jsonMode: false, alive: true };
  onLeave(() => { page.alive = false; });
  $("#spec-mode").addEventListener("click", () => setJsonMode(page, !page.jsonMode));
  $("#spec-reset").addEventListener("click", () => resetSpec(page));
  $("#upload-button").addEventListener("click", () => uploadDataset(page));
  $("#job-dataset").addEventListener("change", () => useDatasetSpec(page));
  $("#submit-form").addEventListener("submit", (event) => submitJob(event, page));
  loadSpec(page, fromJobId);
}

/**
 * Fetches the spec's schema, defaults and examples, the datasets and the devices (and the job to
 * clone), then shows the spec of the chosen dataset, or the cloned job's.
 */
async function loadSpec(page, fromJobId) {
  try {
    const [info, , devices, job] = await Promise.all([api("/v1/spec"), loadDatasets(page), runnableDevices(),
      fromJobId ? api(`/v1/jobs/${encodeURIComponent(fromJobId)}`) : null]);
    if (!page.alive) return;
    page.schema = new SpecSchema(info.json_schema);
    page.defaults = info.defaults;
    page.examples = info.examples || {};
    page.choices = { [DEVICE_FIELD]: ["auto", ...devices] };
    if (job) {
      $("#job-dataset").value = job.dataset;
      $("#job-title").value = `re-run of ${job.name}`;
      $("#job-tags").value = job.tags.join(", ");
      showDatasetNote(page);
      setModel(page, structuredClone(job.spec), `The spec of job ${job.id} (${job.name}); edit it and submit a new job.`);
    } else useDatasetSpec(page);
  } catch (error) {
    $("#submit-error").textContent = `Could not load the spec defaults: ${error.message}`;
  }
}

/** The devices a job can ask for: GET /v1/capabilities' devices, or cpu only where the service has no such route. */
async function runnableDevices() {
  try {
    return (await api("/v1/capabilities")).devices;
  } catch (error) {
    if (error.status === 404) return ["cpu"];
    throw error;
  }
}

/** Shows model (a spec) in the editor shown, with a line saying where it comes from. */
function setModel(page, model, origin) {
  page.model = model;
  if (page.jsonMode) fillJsonEditor(page.model);
  else renderForm(page);
  $("#spec-origin").textContent = origin;
}

function renderForm(page) {
  renderSpecForm($("#spec-form"), page.model, page.schema, page.choices);
}

/** Resets the spec to the chosen dataset's (see the module's docstring). */
function useDatasetSpec(page) {
  showDatasetNote(page);
  const dataset = page.datasets.get($("#job-dataset").value);
  if (!page.defaults || !dataset) return;
  const example = page.examples[dataset.id];
  if (example) {
    setModel(page, structuredClone(example), `Defaults for ${dataset.name}: its example spec (examples/${dataset.name}.yaml).`);
    return;
  }
  const model = structuredClone(page.defaults);
  const output = model.network.layers[model.network.layers.length - 1];
  const changes = [];
  if (output.units !== dataset.num_classes) {
    output.units = dataset.num_classes;
    changes.push(`the output layer sized to ${dataset.name}'s ${dataset.num_classes} classes`);
  }
  if (dataset.kind === "spikes") {
    model.encoding.kind = "spikes";
    if (dataset.time_steps) model.encoding.time_steps = dataset.time_steps;
    changes.push(`spike input of ${model.encoding.time_steps} steps`);
  }
  setModel(page, model, `The paper's defaults${changes.length ? `, ${changes.join(", ")}` : ""}.`);
}

/**
 * Fills the dataset choice from GET /v1/datasets (and page.datasets), selecting the dataset with id
 * selected if given. A built-in the service cannot use yet is listed but disabled; the note under
 * the choice says why (or, for one its first job downloads, that it will).
 */
async function loadDatasets(page, selected) {
  const list = await api("/v1/datasets");
  const select = $("#job-dataset");
  page.datasets = new Map(list.items.map((d) => [d.id, d]));
  select.replaceChildren(...list.items.map((d) => el("option", {
    value: d.id, text: datasetLabel(d), disabled: !d.available, title: d.note,
  })));
  if (selected) select.value = selected;
  showDatasetNote(page);
}

function showDatasetNote(page) {
  const note = $("#job-dataset-note");
  const dataset = page.datasets.get($("#job-dataset").value);
  note.textContent = (dataset && dataset.note) || "";
  note.hidden = !note.textContent;
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
  setModel(page, structuredClone(page.defaults), "The paper's defaults.");
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

/** POST /v1/datasets with the chosen file (and name), then selects the new dataset and its spec. */
async function uploadDataset(page) {
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
    await loadDatasets(page, dataset.id);
    useDatasetSpec(page);
    $("#upload-error").textContent = "";
  } catch (error) {
    $("#upload-error").textContent = error.message;
  } finally {
    button.disabled = false;
    button.textContent = "Upload";
  }
}

/**
 * POST /v1/jobs with the dataset, the spec of the editor shown, the name and tags if any; then
 * opens the job, or shows the API's errors.
 */
async function submitJob(event, page) {
  event.preventDefault();
  clearErrors();
  const spec = page.jsonMode ? editedJson() : page.model;
  if (spec === undefined) return;
  const body = { dataset: $("#job-dataset").value, spec };
  const name = $("#job-title").value.trim();
  if (name) body.name = name;
  const tags = $("#job-tags").value.split(",").map((tag) => tag.trim()).filter(Boolean);
  if (tags.length) body.tags = tags;
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
  $("#submit-error").replaceChildren();
}

/** An error's field as the user reads it: the spec's own path (encoding.time_step), or the request's field (dataset). */
const fieldPath = (field) => field.replace(/^spec\./, "");

/**
 * Puts each of an ApiError's field errors in the slot of its field, or of the nearest enclosing field
 * on the page (spec.network.layers[2].units, then spec.network.layers[2], ...), and marks the control
 * invalid; in JSON mode every spec error goes under the JSON editor, prefixed with its field's path
 * ("encoding.time_step: Extra inputs are not permitted"). Under the Submit button, every error with
 * its field's path, each a link to its field.
 */
function showErrors(error, jsonMode) {
  const summary = [];
  for (const item of error.errors.length ? error.errors : [{ field: "", message: error.message }]) {
    let field = item.field || "";
    const text = field ? `${fieldPath(field)}: ${item.message}` : item.message;
    let slot = null;
    while (field && !(slot = document.querySelector(`[data-error-for="${CSS.escape(field)}"]`))) {
      field = field.includes(".") || field.includes("[") ? field.replace(/(\.[^.[\]]+|\[-?\d+\])$/, "") : "";
    }
    if (jsonMode && (item.field || "").startsWith("spec")) {
      slot = document.querySelector('[data-error-for="spec"]');
      field = "spec";
    }
    const control = slot && document.querySelector(`[data-field="${CSS.escape(field)}"]`);
    if (slot) {
      const message = jsonMode && field === "spec" ? text : item.message;
      slot.textContent = slot.textContent ? `${slot.textContent}\n${message}` : message;
    }
    if (control) control.classList.add("invalid");
    summary.push(el("li", {}, control || (jsonMode && slot) ? el("a", { text, onclick: () => focusField(control || $("#spec-json")) }) : text));
  }
  const count = summary.length;
  $("#submit-error").replaceChildren(el("span", { text: `Not submitted: ${count} problem${count === 1 ? "" : "s"}` }), el("ul", {}, ...summary));
}

function focusField(control) {
  control.scrollIntoView({ block: "center", behavior: "smooth" });
  control.focus();
}
