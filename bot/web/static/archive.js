// The archive: every job newest first, filtered and searched on the server (/api/archive), one page at a
// time as the end of the list comes into view. No framework, no build step.
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
  detail.showModal();  // Escape closes it; focus returns to the card
}

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
