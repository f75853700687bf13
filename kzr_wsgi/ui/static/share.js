// A share link's page: the recording's facts beside its player. The audio element
// already plays (its src is the link's own audio URL); this fills in what the link's
// API says. Every value goes in as text (textContent), never as markup.
"use strict";

function fact(list, label, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.textContent = String(value);
  list.append(dt, dd);
}

function duration(ms) {
  if (ms === null || ms === undefined) return null;
  const total = Math.round(ms / 1000);
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, "0")}`;
}

function when(iso) {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  return new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit", timeZoneName: "short",
  }).format(at);
}

async function load() {
  const status = document.getElementById("status");
  try {
    const response = await fetch(document.body.dataset.shareApi, {
      credentials: "omit", headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      status.textContent = "This link does not work any more.";
      return;
    }
    const item = await response.json();
    const facts = document.getElementById("facts");
    fact(facts, "Time", item.start || item.received_at ? when(item.start || item.received_at) : null);
    fact(facts, "From", item.from || item.caller_id_number);
    fact(facts, "To", item.to);
    fact(facts, "Caller name", item.caller_id_name);
    fact(facts, "Length", duration(item.audio ? item.audio.duration_ms : item.duration_ms));
    status.textContent = "";
    document.body.dataset.loaded = "true";
  } catch (error) {
    status.textContent = `Cannot load the recording: ${error}`;
  }
}

document.addEventListener("DOMContentLoaded", load);
