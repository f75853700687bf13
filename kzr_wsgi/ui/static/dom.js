// What every page of the UI shares: building elements, formatting times and sizes, and
// the flags in words. Every value from a recording goes into the page as text
// (text nodes, textContent, attributes), never as markup: caller names and what was said
// are chosen by whoever placed the call.

/** An element with attributes and children (nodes, or values shown as text). */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined && value !== false) {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Seconds as m:ss (h:mm:ss past an hour); "–" when unknown. */
export function clock(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
  const mmss = `${h ? String(m).padStart(2, "0") : m}:${String(s).padStart(2, "0")}`;
  return h ? `${h}:${mmss}` : mmss;
}

/** Milliseconds as m:ss, rounded to the second; "–" when unknown. */
export function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  return clock(Math.round(ms / 1000));
}

/** An ISO time in the browser's zone, the zone named. */
export function when(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  return new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  }).format(at);
}

/** Bytes as B, KB, MB… */
export function size(bytes) {
  if (bytes === null || bytes === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

/** A SIP address's user part ("+15551234567@realm" -> "+15551234567"). */
export function user(address) {
  if (!address) return "–";
  const at = address.indexOf("@");
  return at > 0 ? address.slice(0, at) : address;
}

// Every flag a recording can carry (the server's ALL_FLAGS, in its order): a short name
// for badges and the filter, and a sentence for the detail. A test holds this list to
// the server's.
export const FLAG_WORDS = {
  empty: ["Empty", "The upload held no audio at all."],
  not_audio: ["Not audio", "The file is not a recording (an error page, or other bytes)."],
  truncated: ["Cut short", "The file ends part-way through its audio."],
  header_not_final: ["Unfinished file",
    "The file was copied before the recording was closed: its header gives no length."],
  shorter_than_reported: ["Shorter than the call",
    "The audio is shorter than the call's length as the phone system reported it."],
  silent: ["Silent", "Nothing but silence was recorded: a muted or dead line."],
  one_way_audio: ["One-way audio", "Only one side of the call was heard."],
  clipped: ["Distorted", "The audio was too loud and is clipped: hard to understand."],
  dead_air: ["Dead air", "Nobody spoke for 30 seconds or more in the middle of the call."],
  no_speech: ["No speech", "Sound, but nobody talking (music on hold, tones, a fax)."],
};

// The flags that mark a recording as defective (the others are facts about the call).
const FACTS = ["dead_air", "no_speech"];

/** Every flag of an item: its inspection's, then its analysis's, once each. */
export function flagsOf(item) {
  const inspected = (item.audio && item.audio.flags) || [];
  const analysed = (item.analysis && item.analysis.flags) || [];
  return [...inspected, ...analysed.filter((flag) => !inspected.includes(flag))];
}

/** True when an item has a defect (what "flagged" means). */
export function defective(item) {
  return flagsOf(item).some((flag) => !FACTS.includes(flag));
}

/** A flag's short name. */
export function flagName(flag) {
  return (FLAG_WORDS[flag] || [flag])[0];
}

/** A flag explained in a sentence; one-way audio says which side was silent. */
export function flagSentence(flag, item) {
  const words = FLAG_WORDS[flag];
  if (!words) return flag;
  if (flag === "one_way_audio" && item.analysis) {
    const silentSide = quietSide(item.analysis);
    if (silentSide) {
      return `Only one side of the call was heard: the ${silentSide} was silent throughout.`;
    }
  }
  return words[1];
}

// The side of a stereo call with the least talk, named by the analysis's speakers.
function quietSide(analysis) {
  const talk = analysis.talk_ms || {};
  const speakers = analysis.speakers || {};
  const sides = Object.keys(talk).filter((side) => side in speakers);
  if (sides.length !== 2) return null;
  const [a, b] = sides;
  const quiet = talk[a] <= talk[b] ? a : b;
  return `${speakers[quiet]} (${quiet} channel)`;
}

/** Who is on each channel, in the analysis's words ({left: "caller", …}), or {}. */
export function speakersOf(item) {
  return (item && item.analysis && item.analysis.speakers) || {};
}

/** The page's JSON from ``url``; a 401 (the session ended) shows the sign-in. */
export async function getJSON(url, options) {
  const response = await fetch(url, {
    credentials: "same-origin", headers: { Accept: "application/json" }, ...(options || {}),
  });
  if (response.status === 401 && !(options && options.credentials === "omit")) {
    window.location.reload();
    throw new Error("signed out");
  }
  let body = null;
  try { body = await response.json(); } catch (error) { body = null; }
  return { status: response.status, ok: response.ok, body };
}
