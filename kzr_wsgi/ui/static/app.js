// The recordings page: reads the search from the page's own URL, asks the JSON API, and
// builds the results with DOM calls. An opened result shows its facts, the player with
// its waveform, the transcript beside it, share links and the raw metadata. Every value
// from a recording goes in as text (textContent, attributes), never as markup.

import {
  defective, duration, el, FLAG_WORDS, flagName, flagsOf, getJSON, size, user, when,
} from "./dom.js";
import { facts, matchList, rawDetails } from "./detail.js";
import { exportBar } from "./exporting.js";
import { installKeys, Player } from "./player.js";
import { apiParams, NUMBERS, pageParams, searchedAs, WORDS } from "./search.js";
import { shareSection } from "./sharing.js";
import { Transcript } from "./transcript.js";

let session = null;

function fillForm(params) {
  const form = document.getElementById("search");
  for (const name of ["q", "account_id", "since", "until", "range"]) {
    if (params.has(name)) form.elements[name].value = params.get(name);
  }
  const flags = document.getElementById("flag");
  flags.replaceChildren(el("option", { value: "" }, "Any"),
    ...Object.keys(FLAG_WORDS).map((flag) => el("option", { value: flag }, flagName(flag))));
  if (params.has("flag")) flags.value = params.get("flag");
  form.elements.flagged.checked = params.get("flagged") === "true";
  // The kind a person chose stays while the box holds the same words.
  const typed = params.get("q") || "";
  const chosen = params.get("as") || "";
  form.elements.as.value = chosen;
  form.elements.q.addEventListener("input", () => {
    form.elements.as.value = form.elements.q.value === typed ? chosen : "";
  });
  const range = form.elements.range;
  const custom = () => {
    const on = range.value === "custom";
    for (const name of ["since", "until"]) {
      form.elements[name].disabled = !on;
      form.elements[name].closest(".field").hidden = !on;
    }
  };
  range.addEventListener("change", custom);
  custom();
}

// What was searched, in words, and the other kind one click away.
function searchedNote(params) {
  const note = document.getElementById("searched");
  const box = (params.get("q") || "").trim();
  if (!box) { note.hidden = true; return; }
  const kind = searchedAs(params);
  const other = kind === NUMBERS ? WORDS : NUMBERS;
  const switched = new URLSearchParams(params);
  switched.delete("cursor");
  switched.set("as", other);
  const button = el("button", { type: "button", id: "search-other", "data-as": other },
    other === WORDS ? "Search what was said instead" : "Search numbers and call ids instead");
  button.addEventListener("click", () => { window.location.search = `?${switched}`; });
  note.replaceChildren(
    kind === NUMBERS ? "Searched numbers and call ids for " : "Searched what was said for ",
    el("q", {}, box), ". ", button);
  note.dataset.as = kind;
  note.hidden = false;
}

function summaryOf(item) {
  const badges = el("span", { class: "flags" });
  for (const flag of flagsOf(item)) badges.append(el("span", { class: "badge", "data-flag": flag }, flagName(flag)));
  const at = item.start || item.received_at;
  const length = item.audio && item.audio.duration_ms !== null && item.audio.duration_ms !== undefined
    ? item.audio.duration_ms : item.duration_ms;
  return el("summary", {},
    el("span", { class: "when" }, el("time", { datetime: at }, when(at))),
    el("span", { class: "from", title: item.from || "" }, user(item.from || item.caller_id_number)),
    el("span", { class: "to", title: item.to || "" }, user(item.to)),
    el("span", { class: "caller", title: "caller name" }, item.caller_id_name || ""),
    el("span", { class: "durations", title: "length" }, duration(length)),
    el("span", { class: "size" }, size(item.size)),
    badges);
}

// An opened result gets its player, transcript, facts, share links and raw metadata
// once; a snippet's click opens it too, and plays from its moment.
function opener(li, item, details, audio, area) {
  let player = null;
  return (start) => {
    if (!player) {
      const length = item.audio && item.audio.duration_ms ? item.audio.duration_ms / 1000 : null;
      const peaks = item.analysis && item.analysis.state === "done"
        ? `api/recordings/${encodeURIComponent(item.id)}/peaks` : null;
      player = new Player(audio, {
        peaksUrl: peaks, speakers: (item.analysis && item.analysis.speakers) || {}, lengthHint: length,
      });
      const titleId = `transcript-${li.dataset.index}`;
      const list = el("ol", { "aria-labelledby": titleId });
      area.after(el("section", { class: "transcript-area", "aria-labelledby": titleId },
        el("h3", { id: titleId }, "Transcript"), list));
      new Transcript(list, player).load(`api/recordings/${encodeURIComponent(item.id)}/transcript`);
      const detail = details.querySelector(".detail");
      detail.prepend(facts(item));
      if (session && session.share) detail.append(shareSection(item));
      detail.append(rawDetails(item));
    }
    if (start !== undefined) {
      details.open = true;
      player.playFrom(start);
    }
  };
}

function result(item, index) {
  const audio = el("audio", { controls: true, preload: "none", src: item.audio_url });
  const download = el("a", { class: "download", href: `${item.audio_url}?download=1` }, "Download");
  const area = el("div", { class: "player-area" }, audio, download);
  const details = el("details", { class: "recording" }, summaryOf(item),
    el("div", { class: "detail" }, el("div", { class: "listen" }, area)));
  const at = item.start || item.received_at;
  const pick = el("input", { type: "checkbox", class: "pick", value: item.id,
    "aria-label": `Select the call of ${when(at)} from ${user(item.from || item.caller_id_number)}` });
  const li = el("li", {
    class: defective(item) ? "result flagged" : "result",
    "data-recording-id": item.id, "data-call-id": item.call_id || "", "data-index": String(index),
  }, pick, details);
  const open = opener(li, item, details, audio, area);
  details.addEventListener("toggle", () => { if (details.open) open(); });
  if (item.matches && item.matches.length) li.append(matchList(item, (start) => open(start)));
  return li;
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

function paging(params, next) {
  const paged = params.has("cursor");
  const newest = document.getElementById("newest");
  const first = new URLSearchParams(params);
  first.delete("cursor");
  newest.href = `?${first}`;
  newest.hidden = !paged;
  const older = document.getElementById("older");
  if (next) {
    const more = new URLSearchParams(params);
    more.set("cursor", next);
    older.href = `?${more}`;
    older.hidden = false;
  } else {
    older.hidden = true;
  }
}

async function load() {
  installKeys();
  const params = pageParams(window.location.search);
  fillForm(params);
  searchedNote(params);
  const api = apiParams(params);
  let answer;
  try {
    const [listing, me] = await Promise.all([
      getJSON(`api/recordings?${api}`), getJSON("api/session")]);
    session = me.ok ? me.body : null;
    answer = listing.body;
    if (!listing.ok) {
      showStatus(`Cannot search: ${(answer && answer.error) || listing.status}`, true);
      return;
    }
  } catch (error) {
    if (String(error.message) !== "signed out") showStatus(`Cannot search: ${error}`, true);
    return;
  }
  const list = document.getElementById("results");
  list.replaceChildren(...answer.items.map(result));
  const count = answer.items.length;
  showStatus(count ? `${count} recording${count === 1 ? "" : "s"}${params.has("cursor") ? " (older page)" : ""}`
    : "No recordings match.", false);
  paging(params, answer.next);
  exportBar(document.getElementById("export"), list, api);
  document.body.dataset.generation = nextGeneration();
  document.body.dataset.loaded = "true";
}

// An audio request refused because the session ended is the page's to notice: asking
// for the session again shows the sign-in (getJSON reloads on a 401).
document.addEventListener("error", (event) => {
  if (event.target instanceof HTMLAudioElement) getJSON("api/session").catch(() => {});
}, true);

// One recording plays at a time.
document.addEventListener("play", (event) => {
  for (const audio of document.querySelectorAll("audio")) {
    if (audio !== event.target) audio.pause();
  }
}, true);

load();
