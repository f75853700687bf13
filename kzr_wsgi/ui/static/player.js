// The player: a waveform drawn from the analysis's peaks (one lane per channel, named by
// the analysis's speakers), click or drag on it to seek; speed; back and forward 5 and 15
// seconds; the time and the length; keys (space, arrows, J/K/L). The page's <audio>
// element stays underneath with its own controls: everything here drives it.

import { clock, el } from "./dom.js";

export const SPEEDS = [0.75, 1, 1.25, 1.5, 2];
let made = 0;
// The player the keys act on: the last one opened, played or touched.
let active = null;

const STYLE = { played: "#1a5fb4", rest: "#9aa0a6", cursor: "#b3261e", line: "#dadce0" };

export class Player {
  /**
   * @param {HTMLAudioElement} audio the element that plays
   * @param {{peaksUrl?: string, speakers?: object, lengthHint?: number}} options
   *   lengthHint: the length in seconds as the catalog knows it, until the audio says.
   */
  constructor(audio, options) {
    made += 1;
    this.audio = audio;
    this.speakers = (options && options.speakers) || {};
    this.lengthHint = options && options.lengthHint;
    this.peaks = null;
    this.pending = null;
    this.canvas = el("canvas", {
      class: "wave", role: "slider", tabindex: "0", "aria-label": "Position in the recording",
      "aria-valuemin": "0", "aria-valuemax": "0", "aria-valuenow": "0",
    });
    this.lanes = el("div", { class: "lanes" });
    this.time = el("span", { class: "time" }, "0:00 / –");
    this.playButton = el("button", { type: "button", class: "play", "aria-label": "Play" }, "Play");
    const speedId = `speed-${made}`;
    this.speed = el("select", { id: speedId, class: "speed" },
      ...SPEEDS.map((rate) => el("option", { value: String(rate), selected: rate === 1 },
        `${rate}×`)));
    const skip = (seconds, label) => {
      const button = el("button", { type: "button", class: "skip", "aria-label": label },
        `${seconds < 0 ? "−" : "+"}${Math.abs(seconds)} s`);
      button.addEventListener("click", () => this.skip(seconds));
      return button;
    };
    this.root = el("div", { class: "player" },
      el("div", { class: "wave-wrap" }, this.canvas, this.lanes),
      el("div", { class: "controls" },
        skip(-15, "Back 15 seconds"), skip(-5, "Back 5 seconds"), this.playButton,
        skip(5, "Forward 5 seconds"), skip(15, "Forward 15 seconds"),
        el("span", { class: "speed-field" }, el("label", { for: speedId }, "Speed"), this.speed),
        this.time));
    audio.before(this.root);
    this.wire();
    if (options && options.peaksUrl) this.loadPeaks(options.peaksUrl);
    this.update();
    active = this;
  }

  wire() {
    const audio = this.audio;
    this.playButton.addEventListener("click", () => this.toggle());
    this.speed.addEventListener("change", () => {
      const rate = Number(this.speed.value);
      audio.playbackRate = rate;
      audio.defaultPlaybackRate = rate;
    });
    audio.addEventListener("ratechange", () => { this.speed.value = String(audio.playbackRate); });
    audio.addEventListener("loadedmetadata", () => {
      if (this.pending !== null) {
        audio.currentTime = this.pending;
        this.pending = null;
      }
      this.update();
    });
    for (const name of ["timeupdate", "durationchange", "seeked", "pause", "ended"]) {
      audio.addEventListener(name, () => this.update());
    }
    audio.addEventListener("play", () => { active = this; this.update(); this.animate(); });
    this.root.addEventListener("focusin", () => { active = this; });
    const seekAt = (event) => {
      const box = this.canvas.getBoundingClientRect();
      const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
      const length = this.length();
      if (length) this.seek(fraction * length);
    };
    this.canvas.addEventListener("pointerdown", (event) => {
      active = this;
      this.canvas.setPointerCapture(event.pointerId);
      seekAt(event);
    });
    this.canvas.addEventListener("pointermove", (event) => {
      if (this.canvas.hasPointerCapture(event.pointerId)) seekAt(event);
    });
    this.canvas.addEventListener("keydown", (event) => {
      if (event.key === "Home") { this.seek(0); event.preventDefault(); }
      if (event.key === "End" && this.length()) { this.seek(this.length()); event.preventDefault(); }
    });
    if (window.ResizeObserver) new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  async loadPeaks(url) {
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) return; // not analysed (yet): a plain line, still seekable
      const peaks = await response.json();
      if (!peaks || typeof peaks.rate !== "number" || typeof peaks.channels !== "object") return;
      this.peaks = peaks;
      this.lanes.replaceChildren(...Object.keys(peaks.channels).map((channel) => {
        const who = this.speakers[channel];
        return el("span", { class: "lane", "data-channel": channel }, who || channel);
      }));
      this.root.dataset.peaks = "true";
      this.draw();
    } catch (error) {
      // The waveform is an aid: the player works without it.
    }
  }

  /** The length in seconds: the audio's, else the waveform's, else the catalog's. */
  length() {
    if (Number.isFinite(this.audio.duration) && this.audio.duration > 0) return this.audio.duration;
    if (this.peaks) {
      const series = Object.values(this.peaks.channels)[0] || [];
      if (series.length) return series.length / this.peaks.rate;
    }
    return this.lengthHint || 0;
  }

  now() {
    return this.pending !== null ? this.pending : this.audio.currentTime;
  }

  /** Move to ``seconds`` (before the audio has loaded too: it moves there once it has). */
  seek(seconds) {
    const length = this.length();
    const target = Math.max(0, length ? Math.min(seconds, length) : seconds);
    if (this.audio.readyState >= 1) {
      this.audio.currentTime = target;
    } else {
      this.pending = target;
      if (this.audio.preload === "none") {
        this.audio.preload = "metadata";
        this.audio.load();
      }
    }
    this.update();
  }

  /** Play from ``seconds``. */
  playFrom(seconds) {
    active = this;
    this.seek(seconds);
    return this.audio.play().catch(() => {});
  }

  skip(seconds) {
    this.seek(this.now() + seconds);
  }

  toggle() {
    if (this.audio.paused) this.audio.play().catch(() => {});
    else this.audio.pause();
  }

  update() {
    const length = this.length();
    const now = this.now();
    this.time.textContent = `${clock(now)} / ${length ? clock(length) : "–"}`;
    const paused = this.audio.paused;
    this.playButton.textContent = paused ? "Play" : "Pause";
    this.playButton.setAttribute("aria-label", paused ? "Play" : "Pause");
    this.canvas.setAttribute("aria-valuemax", String(Math.round(length)));
    this.canvas.setAttribute("aria-valuenow", String(Math.round(now)));
    this.canvas.setAttribute("aria-valuetext", `${clock(now)} of ${length ? clock(length) : "unknown"}`);
    this.draw();
  }

  animate() {
    const step = () => {
      if (this.audio.paused) return;
      this.draw();
      window.requestAnimationFrame(step);
    };
    window.requestAnimationFrame(step);
  }

  draw() {
    const canvas = this.canvas;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (!width || !height) return; // not shown (a closed result)
    const ratio = window.devicePixelRatio || 1;
    const w = Math.round(width * ratio), h = Math.round(height * ratio);
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, w, h);
    const length = this.length();
    const progress = length ? Math.min(1, this.now() / length) : 0;
    const series = this.peaks ? Object.values(this.peaks.channels) : [];
    const laneHeight = h / Math.max(1, series.length);
    series.forEach((values, lane) => {
      const middle = laneHeight * lane + laneHeight / 2;
      for (let x = 0; x < w; x += 1) {
        const from = Math.floor((x / w) * length * this.peaks.rate);
        const to = Math.max(from + 1, Math.floor(((x + 1) / w) * length * this.peaks.rate));
        let peak = 0;
        for (let i = from; i < to && i < values.length; i += 1) peak = Math.max(peak, values[i]);
        const half = Math.max(ratio / 2, peak * (laneHeight / 2) * 0.92);
        context.fillStyle = x / w < progress ? STYLE.played : STYLE.rest;
        context.fillRect(x, middle - half, 1, half * 2);
      }
      if (lane > 0) {
        context.fillStyle = STYLE.line;
        context.fillRect(0, laneHeight * lane, w, ratio);
      }
    });
    if (!series.length) {
      context.fillStyle = STYLE.rest;
      context.fillRect(0, h / 2 - ratio, w, 2 * ratio);
      context.fillStyle = STYLE.played;
      context.fillRect(0, h / 2 - ratio, w * progress, 2 * ratio);
    }
    context.fillStyle = STYLE.cursor;
    context.fillRect(Math.min(w - 2 * ratio, w * progress), 0, 2 * ratio, h);
  }
}

/** The player the keys act on (the last one opened, played or touched). */
export function activePlayer() {
  return active;
}

// Keys for the active player, wherever the focus is, except where a key means something
// already: typing in a field, the audio element's own controls, a button's space.
const KEYS = {
  " ": (p) => p.toggle(), k: (p) => p.toggle(), K: (p) => p.toggle(),
  ArrowLeft: (p) => p.skip(-5), ArrowRight: (p) => p.skip(5),
  j: (p) => p.skip(-15), J: (p) => p.skip(-15), l: (p) => p.skip(15), L: (p) => p.skip(15),
};

export function installKeys() {
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    const action = KEYS[event.key];
    const target = event.target;
    if (!action || !active || !active.root.isConnected) return;
    if (target.closest && target.closest("input, select, textarea, audio, [contenteditable]")) return;
    if (event.key === " " && target.closest && target.closest("button, a, summary")) return;
    event.preventDefault();
    action(active);
  });
}
