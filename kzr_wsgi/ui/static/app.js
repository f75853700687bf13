// The recordings page: reads the search from the page's own URL, asks the JSON API,
// and builds the results with DOM calls. Every value from a recording goes in as
// text (textContent, attributes), never as markup: caller names are attacker-chosen.
"use strict";

const FIELDS = ["q", "account_id", "since", "until", "flag", "flagged", "self_test", "limit",
  "cursor"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function searchParams() {
  const given = new URLSearchParams(window.location.search);
  const params = new URLSearchParams();
  for (const [name, value] of given) {
    if (FIELDS.includes(name) && value !== "") params.append(name, value);
  }
  return params;
}

function fillForm(params) {
  const form = document.getElementById("search");
  for (const name of ["q", "account_id", "since", "until", "flag"]) {
    if (params.has(name)) form.elements[name].value = params.get(name);
  }
  form.elements.flagged.checked = params.get("flagged") === "true";
}

function formatTime(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return iso;
  return new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  }).format(when);
}

function formatDuration(ms) {
  if (ms === null || ms === undefined) return "–";
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
  const mmss = `${String(m).padStart(h ? 2 : 1, "0")}:${String(s).padStart(2, "0")}`;
  return h ? `${h}:${mmss}` : mmss;
}

function formatSize(bytes) {
  if (bytes === null || bytes === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

// A SIP address's user part ("+15551234567@realm" -> "+15551234567"); the whole is in
// the metadata below and in the title.
function user(address) {
  if (!address) return "–";
  const at = address.indexOf("@");
  return at > 0 ? address.slice(0, at) : address;
}

function metadataList(item) {
  const list = el("dl", {});
  for (const [key, value] of Object.entries(item)) {
    let text = value;
    if (value !== null && typeof value === "object") text = JSON.stringify(value);
    if (value === null) text = "–";
    list.append(el("dt", {}, key), el("dd", {}, text));
  }
  return list;
}

// The analysis's flags that are defects; its others (dead_air, no_speech) are facts about
// the call, shown but not marked as flagged. Every inspection flag is a defect.
const ANALYSIS_DEFECTS = ["one_way_audio", "silent", "clipped"];

function result(item) {
  const inspected = (item.audio && item.audio.flags) || [];
  const analysed = (item.analysis && item.analysis.flags) || [];
  const flags = [...inspected, ...analysed.filter((flag) => !inspected.includes(flag))];
  const defective = inspected.length > 0 || analysed.some((f) => ANALYSIS_DEFECTS.includes(f));
  const badges = el("span", { class: "flags" });
  for (const flag of flags) badges.append(el("span", { class: "badge" }, flag));
  const kazoo = formatDuration(item.duration_ms);
  const heard = formatDuration(item.audio ? item.audio.duration_ms : null);
  const when = item.start || item.received_at;
  const summary = el("summary", {},
    el("span", { class: "when" }, el("time", { datetime: when }, formatTime(when))),
    el("span", { class: "from", title: item.from || "" }, user(item.from || item.caller_id_number)),
    el("span", { class: "to", title: item.to || "" }, user(item.to)),
    el("span", { class: "caller", title: "caller name" }, item.caller_id_name || ""),
    el("span", { class: "durations", title: "Kazoo's duration / the audio's" },
      kazoo, el("span", { class: "muted" }, " / "), heard),
    el("span", { class: "size" }, formatSize(item.size)),
    badges);
  const player = el("audio", { controls: "", preload: "none", src: item.audio_url });
  const download = el("a", { class: "download", href: `${item.audio_url}?download=1` },
    "Download");
  const detail = el("div", { class: "detail" }, player, download, metadataList(item));
  const details = el("details", {}, summary, detail);
  return el("li", {
    class: defective ? "result flagged" : "result",
    "data-recording-id": item.id,
  }, details);
}

function showStatus(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

// Each listing the page shows gets a generation one above the last in this tab. Until
// the next page replaces it, the page being left still says data-loaded, so a script
// that waits for a search's results (a test, an automation) waits for a generation other
// than the one it saw before submitting.
function nextGeneration() {
  try {
    const generation = Number(sessionStorage.getItem("kzr-generation") || "0") + 1;
    sessionStorage.setItem("kzr-generation", String(generation));
    return String(generation);
  } catch (error) {
    // Storage turned off: the time this page began is still new to it.
    return `t${performance.timeOrigin}`;
  }
}

async function load() {
  const params = searchParams();
  fillForm(params);
  let answer;
  try {
    const response = await fetch(`api/recordings?${params}`, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (response.status === 401) {
      // The session ended (expired, signed out elsewhere): the page itself shows the sign-in.
      window.location.reload();
      return;
    }
    answer = await response.json();
    if (!response.ok) {
      showStatus(`Cannot search: ${answer.error || response.status}`, true);
      return;
    }
  } catch (error) {
    showStatus(`Cannot search: ${error}`, true);
    return;
  }
  const list = document.getElementById("results");
  list.replaceChildren(...answer.items.map(result));
  const paged = params.has("cursor");
  const count = answer.items.length;
  showStatus(count ? `${count} recording${count === 1 ? "" : "s"}${paged ? " (older page)" : ""}`
    : "No recordings match.", false);
  const newest = document.getElementById("newest");
  const first = new URLSearchParams(params);
  first.delete("cursor");
  newest.href = `?${first}`;
  newest.hidden = !paged;
  const older = document.getElementById("older");
  if (answer.next) {
    const next = new URLSearchParams(params);
    next.set("cursor", answer.next);
    older.href = `?${next}`;
    older.hidden = false;
  } else {
    older.hidden = true;
  }
  document.body.dataset.generation = nextGeneration();
  document.body.dataset.loaded = "true";
}

// One recording plays at a time.
document.addEventListener("play", (event) => {
  for (const audio of document.querySelectorAll("audio")) {
    if (audio !== event.target) audio.pause();
  }
}, true);

document.addEventListener("DOMContentLoaded", load);
