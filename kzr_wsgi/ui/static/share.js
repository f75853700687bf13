// A share link's page: the recording's facts, the player with its waveform and the
// transcript beside it, all from the link's own URLs. The audio element already plays
// (its src is the link's audio URL); this adds the rest. Every value goes in as text.

import { el, when, duration, user } from "./dom.js";
import { installKeys, Player } from "./player.js";
import { Transcript } from "./transcript.js";

function fact(list, label, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", {}, label), el("dd", {}, value));
}

async function load() {
  installKeys();
  const status = document.getElementById("status");
  const api = document.body.dataset.shareApi;
  const base = api.replace(/\/api$/, "");
  let item;
  try {
    const response = await fetch(api, { credentials: "omit", headers: { Accept: "application/json" } });
    if (!response.ok) {
      status.textContent = "This link does not work any more.";
      return;
    }
    item = await response.json();
  } catch (error) {
    status.textContent = `Cannot load the recording: ${error}`;
    return;
  }
  const facts = document.getElementById("facts");
  fact(facts, "Time", when(item.start || item.received_at));
  fact(facts, "From", user(item.from || item.caller_id_number));
  fact(facts, "To", user(item.to));
  fact(facts, "Caller name", item.caller_id_name);
  fact(facts, "Length", duration(item.audio ? item.audio.duration_ms : item.duration_ms));
  const parts = item.parts || {};
  const audio = document.getElementById("player");
  const done = item.analysis && item.analysis.state === "done";
  const player = new Player(audio, {
    peaksUrl: done && parts.peaks ? parts.peaks : null,
    speakers: (item.analysis && item.analysis.speakers) || {},
    lengthHint: item.audio && item.audio.duration_ms ? item.audio.duration_ms / 1000 : null,
  });
  await new Transcript(document.getElementById("transcript"), player)
    .load(parts.transcript || `${base}/transcript`);
  status.textContent = "";
  document.body.dataset.loaded = "true";
}

load();
