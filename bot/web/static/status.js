// The operators' status page: /api/status read every few seconds and drawn as plain tables and lists.
// No framework, no build step.
const EVERY_MS = 3000;
const $ = (id) => document.getElementById(id);

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  cells.forEach((cell, i) => {
    const td = i === 0 ? element("th", cell) : element("td", String(cell), "n");
    if (i === 0) td.scope = "row";
    tr.append(td);
  });
  return tr;
}

function bytes(n) {
  if (n === null || n === undefined) return "unknown";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) { n /= 1024; unit += 1; }
  return `${n.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function drawQueue(queue) {
  const lanes = Object.entries(queue.lanes).map(([lane, counts]) =>
    row([lane, counts.queued, counts.running]));
  $("lanes").tBodies[0].replaceChildren(...lanes);
  $("users").tBodies[0].replaceChildren(...queue.users.map((u) => row([u.name, u.queued, u.running])));
  $("users").hidden = queue.users.length === 0;
  $("no-users").hidden = queue.users.length !== 0;
}

function drawDevices(devices, rss) {
  $("process").textContent = `The bot's process: ${bytes(rss)} resident.`;
  $("devices").replaceChildren(...devices.map((device) => {
    const item = element("li");
    const memory = device.allocated_bytes === null ? "" : ` · ${bytes(device.allocated_bytes)} allocated by torch`;
    item.append(element("strong", device.device),
                element("span", ` · weights ${bytes(device.weight_bytes)}${memory}`, "muted"));
    const models = element("ul");
    if (device.models.length === 0) models.append(element("li", "no model loaded", "muted"));
    for (const model of device.models) {
      models.append(element("li", `${model.name} (${bytes(model.weight_bytes)}, loaded in ${model.load_seconds} s)`));
    }
    item.append(models);
    return item;
  }));
}

function drawHours(hours) {
  const done = hours.reduce((sum, h) => sum + h.done, 0);
  const failed = hours.reduce((sum, h) => sum + h.failed, 0);
  const totals = $("totals");
  totals.replaceChildren(element("span", `${done} done`, "done-count"), " · ",
                         element("span", `${failed} failed`, "failed-count"));
  const most = Math.max(1, ...hours.map((h) => h.done + h.failed));
  $("hours").tBodies[0].replaceChildren(...hours.slice().reverse().map((h) => {
    const tr = row([`${h.hour.slice(5, 10)} ${h.hour.slice(11)}:00`, h.done, h.failed]);
    const bar = element("div", undefined, "bar");
    bar.append(Object.assign(element("span", undefined, "done"), { style: `width:${(100 * h.done) / most}%` }),
               Object.assign(element("span", undefined, "failed"), { style: `width:${(100 * h.failed) / most}%` }));
    const cell = element("td");
    cell.setAttribute("aria-hidden", "true");
    cell.append(bar);
    tr.append(cell);
    return tr;
  }));
}

function drawFailures(failures) {
  $("no-failures").hidden = failures.length !== 0;
  $("failures").replaceChildren(...failures.map((f) => {
    const item = element("li");
    const when = f.finished_at ? new Date(f.finished_at).toLocaleString() : "";
    item.append(element("span", `${when} · job #${f.id} · ${f.kind} · ${f.model}`, "muted"),
                element("span", f.error, "error"));
    return item;
  }));
}

async function refresh() {
  try {
    const response = await fetch("/api/status", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const status = await response.json();
    drawQueue(status.queue);
    drawDevices(status.devices, status.process_rss);
    drawHours(status.hours);
    drawFailures(status.failures);
    $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${EVERY_MS / 1000} s.`;
  } catch (error) {
    $("updated").textContent = `The status could not be read (${error.message}); trying again.`;
  } finally {
    setTimeout(refresh, EVERY_MS);
  }
}

refresh();
