// decode serve's page: plain JavaScript, no build step. Talks to /v1/models, /v1/models/<id>/predict
// and /v1/models/<id>/visualize; every number shown comes from the server's answers.
"use strict";

const CHUNK = 64; // images per predict request (keeps each body far below --max-upload)
const IMAGE_NAME = /\.(png|jpe?g|bmp|gif|ppm|pgm|pbm|tiff?|webp)$/i;
let models = [];
let truthList = null; // Map: file name or relative path -> class index, from the optional list file

const $ = (id) => document.getElementById(id);

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function current() {
  return models.find((m) => m.decoder.key === $("model").value);
}

async function answer(response) {
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

async function loadModels() {
  models = (await answer(await fetch("/v1/models"))).models;
  const select = $("model");
  select.innerHTML = "";
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.decoder.key;
    option.textContent = m["job id"] ? `${m.name} (${m["job id"]})` : m.name;
    select.appendChild(option);
  }
  showModel();
}

function showModel() {
  const m = current();
  if (!m) return;
  const [h, w, c] = m["image dimensions"];
  $("model-info").textContent = `${w}x${h}, ${c} channel(s), ${m.labels.length} labels, resize ${m["image resize mode"]}`;
}

// The true class of a file: the optional list first, else a folder named after a label.
function truthOf(file, path) {
  const m = current();
  if (truthList) {
    for (const key of [path, file.name]) if (truthList.has(key)) return truthList.get(key);
  }
  const parts = path.split("/");
  if (parts.length >= 2) {
    const index = m.labels.indexOf(parts[parts.length - 2]);
    if (index >= 0) return index;
  }
  return null;
}

async function readList(file) {
  const text = await file.text();
  const map = new Map();
  for (const raw of text.split(/\r?\n/)) {
    const match = raw.trim().match(/^(.*\S)\s+(\d+)$/); // DIGITS's rule: path, whitespace, class index
    if (!match) continue;
    const index = Number(match[2]);
    map.set(match[1], index);
    map.set(match[1].split("/").pop(), index);
  }
  return map;
}

async function predict(entries) {
  const m = current();
  const results = [];
  for (let start = 0; start < entries.length; start += CHUNK) {
    const form = new FormData();
    const chunk = entries.slice(start, start + CHUNK);
    chunk.forEach((e) => form.append("image", e.file, e.path));
    setStatus(`Classifying ${Math.min(start + CHUNK, entries.length)} of ${entries.length}...`);
    const response = await fetch(`/v1/models/${encodeURIComponent(m.decoder.key)}/predict`, { method: "POST", body: form });
    let body;
    try {
      body = await answer(response);
    } catch (err) {
      if (chunk.length === 1) {
        results.push({ entry: chunk[0], error: err.message });
        continue;
      }
      throw err;
    }
    // Predictions come in request order, minus the images listed (with their position) in errors.
    const failed = new Map(body.errors.map((e) => [e.position, e.error]));
    let next = 0;
    chunk.forEach((e, position) => {
      if (failed.has(position)) results.push({ entry: e, error: failed.get(position) });
      else results.push({ entry: e, prediction: body.predictions[next++] });
    });
  }
  return results;
}

function percent(p) {
  return `${(100 * p).toFixed(2)}%`;
}

async function showOne(entry) {
  $("many").hidden = true;
  $("one").hidden = false;
  $("label").textContent = "";
  $("probability").textContent = "";
  $("top5").innerHTML = "";
  $("pictures").innerHTML = "";
  $("preview").src = URL.createObjectURL(entry.file);
  const [result] = await predict([entry]);
  if (!result.prediction) {
    setStatus(result.error || "no prediction", true);
    return;
  }
  const p = result.prediction;
  $("label").textContent = p.label;
  $("probability").textContent = `(${percent(p.probability)})`;
  for (const t of p.top_k) {
    const row = $("top5").insertRow();
    row.insertCell().textContent = t.label;
    row.insertCell().textContent = percent(t.probability);
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${Math.max(0.3, 100 * t.probability)}%`;
    const cell = row.insertCell();
    cell.className = "bar-cell";
    cell.appendChild(bar);
  }
  setStatus(`${entry.path}: ${p.label} (${percent(p.probability)})`);
  $("pictures-status").textContent = "Drawing filters and activations...";
  const form = new FormData();
  form.append("image", entry.file, entry.path);
  try {
    const m = current();
    const body = await answer(await fetch(`/v1/models/${encodeURIComponent(m.decoder.key)}/visualize`, { method: "POST", body: form }));
    $("pictures-status").textContent = `${body.pictures.length} pictures, drawn by decode visualize.`;
    for (const picture of body.pictures) {
      const figure = document.createElement("figure");
      const caption = document.createElement("figcaption");
      caption.textContent = picture.title;
      const img = document.createElement("img");
      img.src = picture.src;
      img.alt = picture.title;
      figure.append(caption, img);
      $("pictures").appendChild(figure);
    }
  } catch (err) {
    $("pictures-status").textContent = `No pictures: ${err.message}`;
  }
}

async function showMany(entries) {
  $("one").hidden = true;
  $("many").hidden = false;
  $("results").innerHTML = "";
  $("confusion").innerHTML = "";
  $("accuracy").textContent = "";
  const m = current();
  const results = await predict(entries);
  const header = $("results").insertRow();
  for (const title of ["image", "label", "probability", "true class"]) {
    const th = document.createElement("th");
    th.textContent = title;
    header.appendChild(th);
  }
  const n = m.labels.length;
  const matrix = Array.from({ length: n }, () => new Array(n).fill(0));
  let known = 0, correct = 0, failed = 0;
  for (const r of results) {
    const row = $("results").insertRow();
    const truth = truthOf(r.entry.file, r.entry.path);
    row.insertCell().textContent = r.entry.path;
    row.cells[0].className = "text";
    if (!r.prediction) {
      failed += 1;
      const cell = row.insertCell();
      cell.colSpan = 3;
      cell.className = "text";
      cell.textContent = `error: ${r.error}`;
      continue;
    }
    row.insertCell().textContent = r.prediction.label;
    row.insertCell().textContent = percent(r.prediction.probability);
    row.insertCell().textContent = truth === null ? "" : m.labels[truth] ?? String(truth);
    if (truth !== null && truth < n) {
      known += 1;
      matrix[truth][r.prediction.index] += 1;
      if (truth === r.prediction.index) correct += 1;
      else row.className = "wrong";
    }
  }
  $("many-title").textContent = `${results.length - failed} of ${results.length} images classified` +
    (failed ? ` (${failed} could not be read)` : "");
  if (known) {
    $("accuracy").textContent = `Accuracy: ${(100 * correct / known).toFixed(2)}% (${correct} of ${known} with a known class)`;
    $("confusion").appendChild(confusionTable(matrix, m.labels));
  }
  setStatus(`Done: ${results.length} image(s).`);
}

function confusionTable(matrix, labels) {
  const table = document.createElement("table");
  const head = table.insertRow();
  head.appendChild(Object.assign(document.createElement("th"), { textContent: "true \\ predicted" }));
  labels.forEach((l) => head.appendChild(Object.assign(document.createElement("th"), { textContent: l })));
  matrix.forEach((counts, i) => {
    if (!counts.some((c) => c)) return;
    const row = table.insertRow();
    row.appendChild(Object.assign(document.createElement("th"), { textContent: labels[i] }));
    counts.forEach((c, j) => {
      const cell = row.insertCell();
      cell.textContent = c || "";
      if (c) cell.className = i === j ? "diagonal" : "off";
    });
  });
  return table;
}

async function run(entries) {
  entries = entries.filter((e) => IMAGE_NAME.test(e.file.name) || (e.file.type || "").startsWith("image/"));
  if (!entries.length) {
    setStatus("No image files among those.", true);
    return;
  }
  try {
    if (entries.length === 1) await showOne(entries[0]);
    else await showMany(entries);
  } catch (err) {
    setStatus(err.message, true);
  }
}

function fromInput(input) {
  return Array.from(input.files).map((file) => ({ file, path: file.webkitRelativePath || file.name }));
}

// Dropped folders: walk them with the File System entries API.
async function walk(entry, prefix, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: prefix + file.name });
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const child of batch) await walk(child, `${prefix}${entry.name}/`, out);
    }
  }
}

function setUp() {
  $("model").addEventListener("change", showModel);
  $("files").addEventListener("change", () => run(fromInput($("files"))));
  $("folder").addEventListener("change", () => run(fromInput($("folder"))));
  $("list").addEventListener("change", async () => {
    const file = $("list").files[0];
    truthList = file ? await readList(file) : null;
    setStatus(truthList ? `Truth list: ${truthList.size / 2} entries; now choose the images.` : "");
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const entries = [];
    for (const item of Array.from(e.dataTransfer.items)) {
      const entry = item.webkitGetAsEntry && item.webkitGetAsEntry();
      if (entry) await walk(entry, "", entries);
    }
    run(entries);
  });
  loadModels().catch((err) => setStatus(`Cannot list the models: ${err.message}`, true));
}

setUp();
