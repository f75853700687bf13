// The search: one box, read from the page's own URL. What looks like a phone number or a
// call id (only digits, +, spaces, dashes and parentheses; or anything with @) is sent as
// the API's q (numbers, call ids, caller names); other text as text (what was said). The
// page's URL keeps what was typed (q) and, once a person chose, which kind (as). Dates:
// presets computed in the browser's zone, sent as ISO times with their offset.

/** The page's own parameters (what the form submits). */
export const PAGE_FIELDS = ["q", "as", "range", "since", "until", "account_id", "flag", "flagged",
  "self_test", "limit", "cursor"];
const PASSED = ["account_id", "flag", "flagged", "self_test", "limit", "cursor"];
export const NUMBERS = "numbers";
export const WORDS = "words";

/** ``numbers`` for a phone number or call id, ``words`` for anything else. */
export function kindOf(text) {
  const value = String(text || "").trim();
  if (value.includes("@") || /^[0-9+\s\-()]+$/.test(value)) return NUMBERS;
  return WORDS;
}

/** The page's parameters from its URL, unknown ones and empty values left out. */
export function pageParams(search) {
  const given = new URLSearchParams(search);
  const params = new URLSearchParams();
  for (const [name, value] of given) {
    if (PAGE_FIELDS.includes(name) && value !== "") params.append(name, value);
  }
  return params;
}

/** Which kind a page's search is: what a person chose, else what the box looks like. */
export function searchedAs(params) {
  const chosen = params.get("as");
  if (chosen === NUMBERS || chosen === WORDS) return chosen;
  return kindOf(params.get("q"));
}

function pad(n, width = 2) {
  return String(Math.abs(Math.trunc(n))).padStart(width, "0");
}

/** ``date`` as an ISO time with the browser zone's offset (2026-03-02T00:00:00+01:00). */
export function isoWithOffset(date) {
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T`
    + `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
    + `${sign}${pad(offset / 60)}:${pad(offset % 60)}`;
}

/** Midnight, in the browser's zone, ``days`` days before ``now``'s day. */
export function midnight(now, days) {
  return new Date(now.getFullYear(), now.getMonth(), now.getDate() - days, 0, 0, 0, 0);
}

// A YYYY-MM-DD from a date field as a local day (never UTC's, as Date.parse would).
function localDay(text, endOfDay) {
  const found = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text || "");
  if (!found) return null;
  const [year, month, day] = [Number(found[1]), Number(found[2]) - 1, Number(found[3])];
  return endOfDay ? new Date(year, month, day, 23, 59, 59, 0) : new Date(year, month, day);
}

/** ``since``/``until`` for a range: today, 7d, 30d (midnights here), or custom days. */
export function rangeTimes(params, now = new Date()) {
  const range = params.get("range");
  const days = { today: 0, "7d": 6, "30d": 29 }[range];
  if (days !== undefined) return { since: isoWithOffset(midnight(now, days)), until: null };
  if (range === "custom") {
    const since = localDay(params.get("since"), false);
    const until = localDay(params.get("until"), true);
    return { since: since ? isoWithOffset(since) : null, until: until ? isoWithOffset(until) : null };
  }
  return { since: null, until: null };
}

/** The API's parameters for a page's. */
export function apiParams(params, now = new Date()) {
  const api = new URLSearchParams();
  const box = (params.get("q") || "").trim();
  if (box) api.set(searchedAs(params) === NUMBERS ? "q" : "text", box);
  const { since, until } = rangeTimes(params, now);
  if (since) api.set("since", since);
  if (until) api.set("until", until);
  for (const name of PASSED) {
    for (const value of params.getAll(name)) api.append(name, value);
  }
  return api;
}
