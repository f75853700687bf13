// A recording's detail as a page, not a dump: labelled facts, lengths as m:ss, talk
// time per side, the flags explained in words; the raw metadata behind a "Details"
// toggle. And a result's matching snippets, the words marked (<mark>) from the API's
// highlight offsets. Every value goes in as text.

import {
  clock, duration, el, flagName, flagSentence, flagsOf, size, speakersOf, when,
} from "./dom.js";

function fact(list, label, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", {}, label), el("dd", {}, value));
}

function talkTime(item) {
  const analysis = item.analysis;
  if (!analysis || analysis.state !== "done") return null;
  const speakers = speakersOf(item);
  const parts = Object.entries(analysis.talk_ms || {}).map(([channel, ms]) => {
    const who = speakers[channel] || channel;
    return `${who} ${duration(ms)}`;
  });
  return parts.length ? parts.join(" · ") : null;
}

function analysisState(item) {
  const analysis = item.analysis;
  if (!analysis) return null;
  if (analysis.state === "pending") return "Being analysed";
  if (analysis.state === "skipped") return `Not analysed (${analysis.reason || "skipped"})`;
  if (analysis.state === "failed") return "The analysis failed";
  return null;
}

/** The labelled facts of an item (a <dl class="facts">). */
export function facts(item, list) {
  const dl = list || el("dl", { class: "facts" });
  fact(dl, "Time", when(item.start || item.received_at));
  fact(dl, "From", item.from || item.caller_id_number);
  fact(dl, "To", item.to);
  fact(dl, "Caller name", item.caller_id_name);
  fact(dl, "Account", item.account_id);
  fact(dl, "Length", item.audio && item.audio.duration_ms !== null
    && item.audio.duration_ms !== undefined ? duration(item.audio.duration_ms) : null);
  fact(dl, "Call length (reported)", item.duration_ms !== null && item.duration_ms !== undefined
    ? duration(item.duration_ms) : null);
  fact(dl, "Talk time", talkTime(item));
  const analysis = item.analysis;
  if (analysis && analysis.longest_silence_ms !== null && analysis.longest_silence_ms !== undefined) {
    fact(dl, "Longest silence", duration(analysis.longest_silence_ms));
  }
  fact(dl, "Analysis", analysisState(item));
  fact(dl, "Size", size(item.size));
  const flags = flagsOf(item);
  const explained = flags.length
    ? el("ul", { class: "flag-list" }, ...flags.map((flag) => el("li", { "data-flag": flag },
      el("strong", {}, flagName(flag)), " ", flagSentence(flag, item))))
    : "None";
  dl.append(el("dt", {}, "Flags"), el("dd", {}, explained));
  return dl;
}

/** The raw metadata behind a "Details" toggle. */
export function rawDetails(item) {
  const list = el("dl", { class: "raw-list" });
  for (const [key, value] of Object.entries(item)) {
    if (key === "matches") continue;
    let text = value;
    if (value !== null && typeof value === "object") text = JSON.stringify(value);
    if (value === null) text = "–";
    list.append(el("dt", {}, key), el("dd", { "data-key": key }, text));
  }
  return el("details", { class: "raw" }, el("summary", {}, "Details"), list);
}

/** ``snippet`` with its ``highlights`` ([start, end) offsets in characters) marked. */
export function marked(snippet, highlights) {
  // Offsets count characters (code points), as the server's do; JavaScript strings
  // count UTF-16 units, so the snippet is split into code points first.
  const chars = Array.from(String(snippet || ""));
  const spans = (highlights || []).map(([a, b]) => [Number(a), Number(b)])
    .filter(([a, b]) => Number.isInteger(a) && Number.isInteger(b) && a < b)
    .sort((x, y) => x[0] - y[0]);
  const nodes = [];
  let at = 0;
  for (const [start, end] of spans) {
    if (start < at) continue;
    if (start > at) nodes.push(document.createTextNode(chars.slice(at, start).join("")));
    nodes.push(el("mark", {}, chars.slice(start, Math.min(end, chars.length)).join("")));
    at = Math.min(end, chars.length);
  }
  if (at < chars.length) nodes.push(document.createTextNode(chars.slice(at).join("")));
  return nodes;
}

/** A result's matching snippets: each a button with data-start that plays from there. */
export function matchList(item, onPlay) {
  const list = el("ol", { class: "matches", "aria-label": "Where the words were said" });
  for (const match of item.matches || []) {
    const button = el("button", {
      type: "button", class: "snippet", "data-start": String(match.start),
    }, el("span", { class: "when" }, clock(match.start)),
    el("span", { class: "speaker" }, match.speaker || ""),
    el("span", { class: "said" }, ...marked(match.snippet, match.highlights)));
    button.addEventListener("click", () => onPlay(Number(match.start)));
    list.append(el("li", { class: "match" }, button));
  }
  return list;
}
