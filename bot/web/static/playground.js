// The playground page: a Discord channel drawn from the bridge's server-sent events (bot/web/playground.py).
// Everything a user does goes to the bridge, which acts as that user on the local Discord.
import { session } from "/static/session.js";

const $ = (id) => document.getElementById(id);
const messagesEl = $("messages"), box = $("box"), suggestionsEl = $("suggestions"), errorEl = $("error");
const optionsEl = $("options"), optionFields = $("option-fields"), userSelect = $("user");
const modal = $("modal"), modalForm = $("modal-form"), modalFields = $("modal-fields");

let players = [], commands = [], user = null, events = null, names = {}, channels = {};
let current = null;      // the command picked in the box, or null
let active = 0;          // the highlighted suggestion
let openModal = null;    // the interaction id whose form is shown
const dismissed = new Set();  // ephemeral messages this page was told to hide
const STYLES = { 1: "primary", 2: "secondary", 3: "success", 4: "danger", 5: "link" };

// -- talking to the bridge ---------------------------------------------------------------------------------

const API = "/playground/api";

async function postTo(path, body, headers = {}) {
  const { csrf } = await session();  // the web server refuses a POST without its CSRF token
  return fetch(`${API}${path}`, { method: "POST", headers: { ...headers, "X-CSRF-Token": csrf }, body });
}

async function post(path, data) {
  const response = await postTo(path, JSON.stringify({ user, ...data }), { "Content-Type": "application/json" });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  if (answer.failed) throw new Error(answer.failed);
  return answer;
}

function showError(error) { errorEl.textContent = error ? String(error.message || error) : ""; }

async function start() {
  const state = await (await fetch(`${API}/state`)).json();
  players = state.players;
  names = state.names;
  channels = state.channels;
  $("channel-name").textContent = state.channel;
  $("guild-name").textContent = `${state.guild} · the real bot, a local Discord`;
  for (const p of players) {
    const option = new Option(p.admin ? `${p.name} (admin)` : p.name, p.id);
    userSelect.append(option);
  }
  const wanted = new URLSearchParams(location.search).get("user");
  const chosen = players.find((p) => p.name === wanted || p.id === wanted) || players[0];
  userSelect.value = chosen.id;
  userSelect.addEventListener("change", () => switchUser(userSelect.value));
  await switchUser(chosen.id);
}

async function switchUser(id) {
  user = id;
  const name = players.find((p) => p.id === id).name;
  history.replaceState(null, "", `?user=${encodeURIComponent(name)}`);
  document.body.dataset.user = name;
  if (events) events.close();
  closeModal(false);
  pick(null);
  box.value = "";
  showError("");
  commands = await (await fetch(`${API}/commands?user=${id}`)).json();
  events = new EventSource(`${API}/events?user=${id}`);
  events.onmessage = (event) => receive(JSON.parse(event.data));
}

function receive(event) {
  if (event.type === "reset") {
    messagesEl.querySelectorAll(".msg").forEach((el) => el.remove());
    event.messages.forEach((m) => draw(m));
  } else if (event.type === "message") {
    draw(event.message);
  } else if (event.type === "delete") {
    document.getElementById(`m-${event.id}`)?.remove();
  } else if (event.type === "modal") {
    showModal(event.interaction, event.modal);
  }
  $("empty").hidden = messagesEl.querySelector(".msg") !== null;
}

// -- messages ----------------------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Discord's markdown, the part the bot writes: **bold**, *italic*, __underline__, ~~strike~~, `code`,
// ``` blocks ```, [text](url), links, -# subtext, > quotes, line breaks. Escaped first, so no HTML gets in.
function markdown(text) {
  const blocks = [];
  let html = escapeHtml(text).replace(/```(?:\w*\n)?([\s\S]*?)```/g, (_, code) => {
    blocks.push(`<pre><code>${code}</code></pre>`);
    return `\u0000${blocks.length - 1}\u0000`;
  });
  const codes = [];
  html = html.replace(/`([^`\n]+)`/g, (_, code) => { codes.push(`<code>${code}</code>`); return `\u0001${codes.length - 1}\u0001`; });
  html = html
    .replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g, (_, label, url) => link(url, label))
    .replace(/(^|[\s(])(https?:\/\/[^\s<)]+)/g, (_, lead, url) => lead + link(url, url))
    .replace(/&lt;@!?(\d+)&gt;/g, (_, id) => `<span class="mention">@${escapeHtml(names[id] || "unknown-user")}</span>`)
    .replace(/&lt;#(\d+)&gt;/g, (_, id) => `<span class="mention">#${escapeHtml(channels[id] || "unknown")}</span>`)
    .replace(/&lt;t:(\d+)(?::([tTdDfFR]))?&gt;/g, (_, unix, style) => `<time>${when(Number(unix), style)}</time>`)
    .replace(/\*\*([^*]+?)\*\*/g, "<strong>$1</strong>")
    .replace(/__([^_]+?)__/g, "<u>$1</u>")
    .replace(/(^|[^*\w])\*([^*\n]+?)\*(?!\*)/g, "$1<em>$2</em>")
    .replace(/~~([^~]+?)~~/g, "<s>$1</s>")
    .replace(/^-# (.*)$/gm, '<small class="note">$1</small>')
    .replace(/^&gt; (.*)$/gm, "<blockquote>$1</blockquote>")
    .replace(/\n/g, "<br>");
  return html.replace(/\u0001(\d+)\u0001/g, (_, i) => codes[i]).replace(/\u0000(\d+)\u0000/g, (_, i) => blocks[i]);
}

// Discord's <t:unix:R> and friends: "in 5 minutes", or the date and time.
function when(unix, style) {
  const date = new Date(unix * 1000);
  if (style !== "R") return date.toLocaleString();
  const minutes = Math.round((unix * 1000 - Date.now()) / 60000);
  const format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  if (Math.abs(minutes) < 60) return format.format(minutes, "minute");
  if (Math.abs(minutes) < 60 * 48) return format.format(Math.round(minutes / 60), "hour");
  return format.format(Math.round(minutes / 1440), "day");
}

// A link to a message of this channel jumps to it; others open in a new tab.
function link(url, label) {
  const jump = url.match(/\/channels\/[^/]+\/\d+\/(\d+)$/);
  if (jump) return `<a href="#m-${jump[1]}" data-jump="${jump[1]}">${label}</a>`;
  return `<a href="${url}" target="_blank" rel="noopener noreferrer">${label}</a>`;
}

function draw(m) {
  if (dismissed.has(m.id)) return;
  const nearBottom = messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 120;
  const article = el("article", { id: `m-${m.id}`, class: "msg" + (m.ephemeral ? " ephemeral" : ""),
                                  "aria-label": `${m.author.name}'s message` });
  if (m.via) {
    const what = m.via.command ? `used /${m.via.command}` : "clicked";
    const target = m.via.message ? el("a", { href: `#m-${m.via.message}`, "data-jump": m.via.message }, "a message") : null;
    article.append(el("div", { class: "via" }, `↳ ${m.via.user} ${what} `, target));
  }
  const time = new Date(m.timestamp);
  article.append(el("div", { class: "head" },
    el("span", { class: "author" }, m.author.name), m.author.bot ? el("span", { class: "tag" }, "App") : null,
    el("time", { class: "time", datetime: m.timestamp }, time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })),
    m.edited ? el("span", { class: "edited" }, "(edited)") : null));
  if (m.loading) {
    article.append(el("div", { class: "content thinking" }, `${m.author.name} is thinking…`));
  } else if (m.content) {
    const content = el("div", { class: "content" });
    content.innerHTML = markdown(m.content);
    article.append(content);
  }
  for (const embed of m.embeds || []) article.append(drawEmbed(embed));
  if (m.attachments.length) {
    const files = el("div", { class: "attachments" });
    for (const a of m.attachments) {
      if ((a.content_type || "").startsWith("image/")) {
        const img = el("img", { src: a.url, alt: a.filename, width: a.width, height: a.height, loading: "lazy" });
        if (a.width && a.width < 256) img.classList.add("small");
        files.append(el("a", { href: a.url, target: "_blank", rel: "noopener" }, img));
      } else {
        files.append(el("a", { href: a.url, download: a.filename }, `📎 ${a.filename}`));
      }
    }
    article.append(files);
  }
  if (m.components.length) article.append(drawRows(m));
  if (m.ephemeral) {
    article.append(el("div", { class: "note" }, "👁 Only you can see this · ",
      el("button", { type: "button", class: "dismiss", onclick: () => { dismissed.add(m.id); article.remove(); } },
        "Dismiss message")));
  }
  const old = document.getElementById(article.id);
  if (old) {
    const focused = old.contains(document.activeElement) ? document.activeElement.dataset.customId : null;
    old.replaceWith(article);
    if (focused) article.querySelector(`[data-custom-id="${CSS.escape(focused)}"]`)?.focus();
  } else {
    messagesEl.append(article);
  }
  if (nearBottom) messagesEl.scrollTop = messagesEl.scrollHeight;
}

function drawEmbed(embed) {
  const node = el("div", { class: "embed" });
  if (embed.color) node.style.borderLeftColor = `#${embed.color.toString(16).padStart(6, "0")}`;
  if (embed.title) node.append(el("h3", {}, embed.title));
  for (const part of [embed.description, ...(embed.fields || []).map((f) => `**${f.name}**\n${f.value}`)]) {
    if (!part) continue;
    const div = el("div", { class: "content" });
    div.innerHTML = markdown(part);
    node.append(div);
  }
  if (embed.image?.url) node.append(el("img", { src: embed.image.url, alt: "" }));
  return node;
}

function drawRows(m) {
  const rows = el("div", { class: "rows" });
  for (const row of m.components) {
    const line = el("div", { class: "row", role: "group" });
    for (const c of row.components || []) {
      if (c.type === 2) line.append(drawButton(m, c));
      else if (c.type === 3) line.append(drawSelect(m, c));
    }
    rows.append(line);
  }
  return rows;
}

function drawButton(m, c) {
  const label = [c.emoji?.name, c.label].filter(Boolean).join(" ");
  if (c.style === 5) {
    return el("a", { href: c.url, target: "_blank", rel: "noopener", class: "button" }, `${label} ↗`);
  }
  return el("button", {
    type: "button", class: STYLES[c.style] || "secondary", disabled: !!c.disabled, dataset: { customId: c.custom_id },
    onclick: async (event) => {
      showError("");
      event.currentTarget.setAttribute("aria-busy", "true");
      try { await post("/click", { message: m.id, custom_id: c.custom_id }); } catch (error) { showError(error); }
      finally { event.target?.removeAttribute?.("aria-busy"); }
    },
  }, label);
}

function drawSelect(m, c) {
  const select = el("select", { disabled: !!c.disabled, "aria-label": c.placeholder || "Choose", dataset: { customId: c.custom_id } });
  const chosen = (c.options || []).some((o) => o.default);
  if (!chosen) select.append(el("option", { value: "", disabled: true, selected: true }, c.placeholder || "Make a selection"));
  for (const o of c.options || []) {
    select.append(el("option", { value: o.value, selected: !!o.default, title: o.description },
      [o.emoji?.name, o.label].filter(Boolean).join(" ")));
  }
  select.addEventListener("change", async () => {
    showError("");
    try { await post("/select", { message: m.id, custom_id: c.custom_id, values: [select.value] }); }
    catch (error) { showError(error); }
  });
  return select;
}

messagesEl.addEventListener("click", (event) => {
  const jump = event.target.closest("[data-jump]");
  if (!jump) return;
  const target = document.getElementById(`m-${jump.dataset.jump}`);
  if (!target) return;
  event.preventDefault();
  target.scrollIntoView({ block: "center" });
  target.classList.add("flash");
  setTimeout(() => target.classList.remove("flash"), 1500);
});

// -- the message box: slash commands -------------------------------------------------------------------------

// The command the box names ("/model use rest" names "model use"), the longest that fits.
function named(text) {
  if (!text.startsWith("/")) return null;
  const typed = text.slice(1);
  return commands.filter((c) => typed === c.name || typed.startsWith(c.name + " "))
    .sort((a, b) => b.name.length - a.name.length)[0] || null;
}

// The option the text after the command fills: the first required text option without fixed choices.
function inlineOption(command) {
  return command?.options.find((o) => o.type === "string" && o.required && !o.choices.length && !o.autocomplete) || null;
}

function matches() {
  const typed = box.value.slice(1).toLowerCase();
  return commands.filter((c) => c.name.startsWith(typed)).slice(0, 25);
}

function refresh() {
  const command = named(box.value);
  if (command !== current) pick(command);
  const listing = box.value.startsWith("/") && !command;
  const found = listing ? matches() : [];
  suggestionsEl.replaceChildren(...found.map((c, i) => el("li", {
    id: `s-${i}`, role: "option", "aria-selected": i === active ? "true" : "false",
    onmousedown: (event) => { event.preventDefault(); choose(c); },
  }, el("span", { class: "name" }, `/${c.name}`), el("span", { class: "desc" }, c.description))));
  suggestionsEl.hidden = found.length === 0;
  box.setAttribute("aria-expanded", String(found.length > 0));
  if (found.length) box.setAttribute("aria-activedescendant", `s-${Math.min(active, found.length - 1)}`);
  else box.removeAttribute("aria-activedescendant");
  return found;
}

function choose(command) {
  box.value = `/${command.name} `;
  active = 0;
  refresh();
  box.focus();
}

// Show the fields of the command's options (all but the one the box's text fills).
function pick(command) {
  current = command;
  optionFields.replaceChildren();
  optionsEl.hidden = !command;
  if (!command) return;
  const inline = inlineOption(command);
  $("options-title").textContent = `/${command.name} — ${command.description}`;
  if (inline) {
    optionFields.append(el("p", { class: "inline-note" },
      `Type the ${inline.name} after the command. ${inline.description}`));
  }
  for (const option of command.options) {
    if (option === inline) continue;
    optionFields.append(field(command, option));
  }
}

function field(command, option) {
  const id = `opt-${option.name}`;
  let input, extra = null;
  if (option.choices.length) {
    input = el("select", { id });
    if (!option.required) input.append(el("option", { value: "" }, "—"));
    for (const choice of option.choices) input.append(el("option", { value: String(choice.value) }, choice.name));
  } else if (option.type === "boolean") {
    input = el("select", { id }, el("option", { value: "" }, "—"), el("option", { value: "true" }, "True"),
      el("option", { value: "false" }, "False"));
  } else if (option.type === "attachment") {
    input = el("input", { id, type: "file", accept: "image/*" });
  } else if (option.type === "integer" || option.type === "number") {
    input = el("input", { id, type: "number", step: option.type === "integer" ? "1" : "any",
                          min: option.min_value, max: option.max_value });
  } else {
    input = el("input", { id, type: "text", minlength: option.min_length, maxlength: option.max_length });
    if (option.autocomplete) {
      extra = el("datalist", { id: `${id}-choices` });
      input.setAttribute("list", extra.id);
      let timer = null;
      const list = extra;
      input.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(() => suggest(command, option, input, list), 200);
      });
      input.addEventListener("focus", () => suggest(command, option, input, list), { once: true });
    }
  }
  input.dataset.option = option.name;
  input.dataset.type = option.type;
  if (option.required) input.required = true;
  return el("div", { class: "field" }, labelFor(id, option), input, extra);
}

function labelFor(id, option) {
  return el("label", { for: id },
    el("span", { class: "label" }, option.name, option.required ? el("span", { class: "req", "aria-label": "required" }, " *") : null),
    " ", el("span", { class: "hint" }, `${option.type} · ${option.description}`));
}

async function suggest(command, option, input, list) {
  try {
    const options = { ...(await values(command, false)), [option.name]: input.value };
    const { choices } = await post("/autocomplete", { command: command.name, options, focused: option.name });
    list.replaceChildren(...choices.map((c) => el("option", { value: String(c.value) }, c.name)));
  } catch (error) { /* a client shows no choices then */ }
}

// The option values of the picked command: the box's text, then the fields (files uploaded first if `upload`).
async function values(command, upload = true) {
  const result = {};
  const inline = inlineOption(command);
  const rest = box.value.slice(command.name.length + 2).trim();
  if (inline && rest) result[inline.name] = rest;
  for (const input of optionFields.querySelectorAll("[data-option]")) {
    const name = input.dataset.option, type = input.dataset.type;
    if (type === "attachment") {
      const file = input.files[0];
      if (!file || !upload) continue;
      const response = await postTo(`/upload?filename=${encodeURIComponent(file.name)}`, file);
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error);
      result[name] = { upload: answer.id };
      continue;
    }
    if (input.value === "") continue;
    if (type === "integer") result[name] = parseInt(input.value, 10);
    else if (type === "number") result[name] = parseFloat(input.value);
    else if (type === "boolean") result[name] = input.value === "true";
    else {
      const option = command.options.find((o) => o.name === name);
      const choice = option.choices.find((c) => String(c.value) === input.value);
      result[name] = choice ? choice.value : input.value;
    }
  }
  return result;
}

async function send() {
  showError("");
  const text = box.value.trim();
  if (!text) return;
  const command = named(text);
  if (!command) {
    showError(text.startsWith("/") ? `There is no command ${text.split(" ")[0]} here: pick one from the list.`
      : "The bot listens to slash commands: type / and pick one (/imagine, /info, /settings…).");
    return;
  }
  const missing = command.options.filter((o) => o.required && o !== inlineOption(command)).find((o) => {
    const input = optionFields.querySelector(`[data-option="${o.name}"]`);
    return input && (o.type === "attachment" ? !input.files.length : input.value === "");
  });
  const inline = inlineOption(command);
  if (inline && !box.value.slice(command.name.length + 2).trim()) {
    showError(`/${command.name} needs its ${inline.name}: type it after the command.`);
    return;
  }
  if (missing) { showError(`/${command.name} needs ${missing.name}.`); return; }
  $("send").disabled = true;
  try {
    await post("/command", { command: command.name, options: await values(command) });
    box.value = "";
    pick(null);
    refresh();
  } catch (error) {
    showError(error);
  } finally {
    $("send").disabled = false;
    box.focus();
  }
}

box.addEventListener("input", () => { active = 0; refresh(); });
box.addEventListener("keydown", (event) => {
  const found = suggestionsEl.hidden ? [] : matches();
  if (found.length && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
    event.preventDefault();
    active = (active + (event.key === "ArrowDown" ? 1 : found.length - 1)) % found.length;
    refresh();
  } else if (found.length && (event.key === "Tab" || event.key === "Enter")) {
    event.preventDefault();
    choose(found[Math.min(active, found.length - 1)]);
  } else if (event.key === "Escape" && !suggestionsEl.hidden) {
    event.preventDefault();
    suggestionsEl.hidden = true;
    box.setAttribute("aria-expanded", "false");
  }
});
$("composer").addEventListener("submit", (event) => { event.preventDefault(); send(); });

// -- modals ----------------------------------------------------------------------------------------------------

function showModal(interaction, form) {
  openModal = interaction;
  $("modal-title").textContent = form.title;
  modalFields.replaceChildren();
  let n = 0;
  const add = (component, label, description) => {
    const id = `modal-${n++}`;
    let input;
    if (component.type === 4) {
      const props = { id, name: component.custom_id, placeholder: component.placeholder,
                      minlength: component.min_length, maxlength: component.max_length,
                      required: component.required !== false };
      input = component.style === 2 ? el("textarea", props) : el("input", { type: "text", ...props });
      input.value = component.value || "";
    } else if (component.type === 3) {
      input = el("select", { id, name: component.custom_id });
      for (const o of component.options || []) input.append(el("option", { value: o.value, selected: !!o.default }, o.label));
    } else {
      return;
    }
    modalFields.append(el("div", { class: "field" },
      el("label", { for: id, class: "label" }, label || component.label || component.custom_id),
      description ? el("span", { class: "hint" }, description) : null, input));
  };
  for (const top of form.components || []) {
    if (top.type === 1) (top.components || []).forEach((c) => add(c));
    else if (top.type === 18) add(top.component, top.label, top.description);
    else if (top.type === 10) {
      const p = el("div", { class: "content" });
      p.innerHTML = markdown(top.content || "");
      modalFields.append(p);
    }
  }
  if (!modal.open) modal.showModal();
  modalFields.querySelector("input, textarea, select")?.focus();
}

function closeModal(tell = true) {
  const interaction = openModal;
  openModal = null;
  if (modal.open) modal.close();
  if (tell && interaction) post("/dismiss", { interaction }).catch(() => {});
}

modal.addEventListener("close", () => { if (openModal) closeModal(true); });  // Escape, or the form's own close
$("modal-cancel").addEventListener("click", () => closeModal(true));
modalForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!modalForm.reportValidity()) return;
  const values = {};
  for (const input of modalFields.querySelectorAll("[name]")) {
    values[input.name] = input.tagName === "SELECT" ? [input.value] : input.value;
  }
  const interaction = openModal;
  openModal = null;
  modal.close();
  showError("");
  try { await post("/modal", { interaction, values }); } catch (error) { showError(error); }
  box.focus();
});

start().catch((error) => showError(`The playground could not start: ${error.message}`));
