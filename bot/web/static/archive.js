// The archive: every job newest first, filtered and searched on the server (/api/archive), one page at a
// time as the end of the list comes into view; a job's detail with the buttons Discord has under it (Rerun,
// U1–U4, V1–V4; Vary (Subtle/Strong/Region) under an upscale), whose new jobs are followed here live.
// No framework, no build step.
import {post} from "/static/session.js";
import {Brush} from "/static/brush.js";

const form = document.getElementById("filters");
const list = document.getElementById("jobs");
const status = document.getElementById("status");
const more = document.getElementById("more");
const detail = document.getElementById("detail");
let next = null;      // the cursor of the next page; null: no more
let generation = 0;   // bumped by every new search: late pages of an old one are dropped

function query(before) {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) if (value) params.set(name, value);
  if (before) params.set("before", before);
  return params;
}

async function load(reset) {
  if (reset) { generation += 1; next = null; list.replaceChildren(); }
  else if (next === null) return;
  const mine = generation;
  status.textContent = "Loading…";
  const response = await fetch(`/api/archive?${query(reset ? null : next)}`);
  if (mine !== generation) return;
  if (!response.ok) { status.textContent = `The archive could not be read (${response.status}).`; return; }
  const page = await response.json();
  for (const job of page.jobs) list.append(card(job));
  next = page.next_before;
  status.textContent = list.children.length ? `${list.children.length} job${list.children.length === 1 ? "" : "s"}${next ? "…" : ""}`
                                            : "No jobs match.";
}

function card(job) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.job = job.id;
  const image = document.createElement("img");
  image.src = job.image; image.alt = job.prompt || job.kind; image.loading = "lazy";
  const caption = document.createElement("span");
  caption.className = "caption";
  caption.textContent = job.prompt || `(${job.kind})`;
  const meta = document.createElement("small");
  meta.textContent = `${job.model} · ${job.kind} · #${job.id}`;
  caption.append(meta);
  button.append(image, caption);
  button.addEventListener("click", () => open(job.id));
  item.append(button);
  return item;
}

async function open(id) {
  const response = await fetch(`/api/jobs/${id}`);
  if (!response.ok) return;
  const job = await response.json();
  document.getElementById("detail-image").src = job.image;
  document.getElementById("detail-image").alt = job.prompt || job.kind;
  document.getElementById("detail-prompt").textContent = job.prompt || `(${job.kind})`;
  document.getElementById("detail-meta").textContent =
    `${job.model} · ${job.width}×${job.height} · seed ${job.seed} · job #${job.id} · ${job.created_at}`;
  document.getElementById("detail-parameters").textContent = job.parameters;
  const discord = document.getElementById("open-discord");
  discord.hidden = !job.link; if (job.link) discord.href = job.link;
  document.getElementById("copy-prompt").onclick = () => copy(job.prompt);
  document.getElementById("copy-seed").onclick = () => copy(String(job.seed));
  buttons(job);
  if (!detail.open) detail.showModal();  // Escape closes it; focus returns to the card
}

// --- the job's buttons: the same actions as under its Discord message -------------------------------------

const actions = document.getElementById("job-actions");
const started = document.getElementById("started");
const ACTIVE = new Set(["queued", "running"]);

const remixBox = document.getElementById("remix-box");
const remix = document.getElementById("remix");
const remixPrompt = document.getElementById("remix-prompt");
remix.addEventListener("change", () => { remixPrompt.hidden = !remix.checked; if (remix.checked) remixPrompt.focus(); });

// Remix, as the Discord form does it: 🔄 and the variations take the edited prompt (upscales take none).
function remixed(job, action) {
  return remix.checked && job.remixable.includes(action) ? {prompt: remixPrompt.value} : {};
}
const PANS = [["left", "⬅️"], ["right", "➡️"], ["up", "⬆️"], ["down", "⬇️"]];

function buttons(job) {
  actions.replaceChildren();
  remixBox.hidden = job.status !== "done" || !job.stored;
  remixPrompt.value = job.remix || job.prompt || "";
  if (job.status !== "done" || !job.stored) return;  // nothing to start from (yet, or any more)
  const add = (text, label, run) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    if (label) button.setAttribute("aria-label", label);
    button.addEventListener("click", run);
    actions.append(button);
  };
  if (job.grid) {
    for (let i = 1; i <= 4; i++) add(`U${i}`, `Upscale image ${i}`, () => act(job, `U${i}`, "upscale", i));
    add("🔄", "Rerun", () => act(job, "🔄 Rerun", "reroll", 0));
    for (let i = 1; i <= 4; i++) add(`V${i}`, `Variations of image ${i}`, () => act(job, `V${i}`, "vary", i));
  } else {  // an upscaled image: the tools under its Discord message
    add("Vary (Subtle)", null, () => act(job, "Vary (Subtle)", "subtle", 0));
    add("Vary (Strong)", null, () => act(job, "Vary (Strong)", "strong", 0));
    add("Vary (Region)", "Vary (Region): paint the part to repaint", () => openRegion(job));
    if (job.kind === "upscale") add("Upscale (Creative)", null, () => act(job, "Upscale (Creative)", "creative", 0));
    add("Zoom Out 2x", null, () => act(job, "Zoom Out 2x", "zoom2", 0));
    add("Zoom Out 1.5x", null, () => act(job, "Zoom Out 1.5x", "zoom15", 0));
    add("Custom Zoom", "Custom Zoom: pick the factor and the prompt", () => openZoom(job));
    if (job.width !== job.height) add("Make Square", null, () => act(job, "Make Square", "square", 0));
    for (const [side, arrow] of PANS) add(arrow, `Pan ${side}`, () => act(job, `Pan ${side}`, `pan${side}`, 0));
  }
}

async function act(job, label, action, index) {
  await submitted(label, job, post(`/api/jobs/${job.id}/actions/${action}`, {index, ...remixed(job, action)}));
}

// A request that starts a job: its answer becomes a line in "Started from here", followed until it ends.
async function submitted(label, parent, request) {
  const item = document.createElement("li");
  const text = document.createElement("span");
  text.textContent = `${label} of #${parent.id}: sending…`;
  item.append(text);
  document.getElementById("started-section").hidden = false;
  started.prepend(item);
  let response;
  try { response = await request; } catch { response = null; }
  const answer = response ? await response.json().catch(() => ({})) : {};
  if (!response || !response.ok) {
    item.className = "failed";
    item.setAttribute("role", "alert");
    text.textContent = `${label} of #${parent.id}: ${answer.error || "the bot could not be reached; try again."}`;
    return false;
  }
  follow(item, text, `${label} of #${parent.id} → job #${answer.job.id}`, answer.job.id);
  return true;
}

async function follow(item, text, title, id) {
  item.dataset.job = id;
  for (;;) {
    const response = await fetch(`/api/jobs/${id}`).catch(() => null);
    const job = response && response.ok ? await response.json() : null;
    if (job && !ACTIVE.has(job.status)) { ended(item, text, title, job); return; }
    text.textContent = `${title}: ${!job ? "…" : job.status === "running" ? generating(job.progress)
                                        : job.position ? `queued (#${job.position} in line)` : "queued"}`;
    item.dataset.status = job ? job.status : "";
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
}

function generating(progress) {
  return progress === null || progress === undefined ? "generating…" : `generating… ${Math.round(progress * 100)}%`;
}

function ended(item, text, title, job) {
  item.dataset.status = job.status;
  if (job.status !== "done") {
    item.className = "failed";
    text.textContent = `${title}: ${job.status}${job.error ? ` — ${job.error}` : ""}`;
    return;
  }
  text.textContent = `${title}: done`;
  const image = document.createElement("img");
  image.src = `${job.image}?done`;
  image.alt = `job #${job.id}`;
  const show = document.createElement("button");
  show.type = "button";
  show.textContent = `Open #${job.id}`;
  show.addEventListener("click", () => open(job.id));
  item.prepend(image);
  item.append(show);
  list.prepend(card(job));  // the archive has it now too
}

// --- Vary (Region) with a brush ------------------------------------------------------------------------

const region = document.getElementById("region");
const regionStatus = document.getElementById("region-status");
const regionPrompt = document.getElementById("region-prompt");
const brush = new Brush(document.getElementById("region-canvas"), document.getElementById("brush-size"),
                        document.getElementById("brush-shown"));
let painting = null;  // the upscaled job painted on

async function openRegion(job) {
  painting = job;
  regionStatus.textContent = "";
  regionPrompt.value = job.remix;
  await brush.load(`${job.image}?region`);
  region.showModal();
  document.getElementById("region-canvas").focus();
}

document.getElementById("brush-undo").addEventListener("click", () => brush.undo());
document.getElementById("brush-clear").addEventListener("click", () => brush.clear());
document.getElementById("region-close").addEventListener("click", () => region.close());
document.getElementById("region-submit").addEventListener("click", async () => {
  if (!brush.painted) { regionStatus.textContent = "Paint over the part to repaint first."; return; }
  await sendFrom(region, document.getElementById("region-submit"), regionStatus, "Vary (Region)", painting,
                 () => post(`/api/jobs/${painting.id}/region`, {mask: brush.mask(), prompt: regionPrompt.value}));
});

// A dialog's request that starts a job: the dialog closes once the bot accepted it, else says why.
async function sendFrom(dialog, submit, statusLine, label, parent, request) {
  submit.disabled = true;
  statusLine.textContent = "Sending…";
  const response = await request().catch(() => null);
  submit.disabled = false;
  if (response && response.ok) {
    dialog.close();
    await submitted(label, parent, Promise.resolve(response));
  } else {
    const answer = response ? await response.json().catch(() => ({})) : {};
    statusLine.textContent = answer.error || "The bot could not be reached; try again.";
  }
}

// --- Custom Zoom: a factor and the prompt, as its Discord form -----------------------------------------

const zoom = document.getElementById("zoom");
const zoomStatus = document.getElementById("zoom-status");
let zooming = null;  // the upscaled job zoomed out of

function openZoom(job) {
  zooming = job;
  zoomStatus.textContent = "";
  document.getElementById("zoom-prompt").value = job.remix;
  zoom.showModal();
  document.getElementById("zoom-factor").focus();
}

document.getElementById("zoom-close").addEventListener("click", () => zoom.close());
document.getElementById("zoom-form").addEventListener("submit", async (event) => {
  event.preventDefault();  // the dialog stays open until the bot has accepted the job
  const factor = document.getElementById("zoom-factor").value;
  await sendFrom(zoom, document.getElementById("zoom-submit"), zoomStatus, `Custom Zoom ${factor}x`, zooming,
                 () => post(`/api/jobs/${zooming.id}/zoom`, {factor, prompt: document.getElementById("zoom-prompt").value}));
});

async function copy(text) {
  try { await navigator.clipboard.writeText(text); status.textContent = "Copied."; }
  catch { status.textContent = text; }  // no clipboard (plain http, an old browser): show it to copy by hand
}

document.getElementById("close").addEventListener("click", () => detail.close());
let typing;
const later = () => { clearTimeout(typing); typing = setTimeout(() => load(true), 250); };
form.addEventListener("input", later);  // typing in the search box
form.addEventListener("change", later);  // a select or the date picked
form.addEventListener("submit", (event) => { event.preventDefault(); load(true); });
new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting) && next) load(false); })
  .observe(more);

const models = await (await fetch("/api/models")).json();
const select = document.getElementById("model");
for (const name of models) select.append(new Option(name, name));
load(true);
