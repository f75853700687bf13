// The transcript beside the player: segments in order, each with its speaker and time
// (data-start in seconds, data-speaker); the one being played is marked aria-current and
// kept in view; a click plays from it. What was said is shown as text, never markup.

import { clock, el } from "./dom.js";

export class Transcript {
  /**
   * @param {HTMLOListElement} list where the segments go
   * @param {import("./player.js").Player} player what plays them
   */
  constructor(list, player) {
    this.list = list;
    this.player = player;
    this.segments = [];
    this.current = null;
    list.classList.add("transcript");
    list.addEventListener("click", (event) => {
      const segment = event.target.closest("li.segment");
      if (segment && list.contains(segment)) this.player.playFrom(Number(segment.dataset.start));
    });
    for (const name of ["timeupdate", "seeked", "play"]) {
      player.audio.addEventListener(name, () => this.follow());
    }
  }

  /** Fetch the segments from ``url``; say so when there are none (yet). */
  async load(url) {
    let answer = null;
    try {
      const response = await fetch(url, {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      if (response.ok) answer = await response.json();
    } catch (error) {
      answer = null;
    }
    const segments = (answer && Array.isArray(answer.segments)) ? answer.segments : [];
    this.show(segments);
    return segments.length;
  }

  show(segments) {
    this.segments = segments.slice().sort((a, b) => a.start - b.start);
    if (!this.segments.length) {
      this.list.replaceChildren(el("li", { class: "none" }, "No transcript for this recording (yet)."));
      return;
    }
    this.list.replaceChildren(...this.segments.map((segment) => el("li", {
      class: "segment", "data-start": String(segment.start), "data-end": String(segment.end),
      "data-speaker": segment.speaker,
    }, el("button", { type: "button", class: "seek" },
      el("span", { class: "when" }, clock(segment.start)),
      el("span", { class: "speaker" }, segment.speaker),
      el("span", { class: "said" }, segment.text)))));
    this.follow();
  }

  /** Mark the segment being played and keep it in view. */
  follow() {
    const now = this.player.now();
    let found = null;
    // A segment is playing from its start (a seek lands a little early at times) until
    // the next begins, or a second after its end when a silence follows.
    for (const item of this.list.querySelectorAll("li.segment")) {
      const start = Number(item.dataset.start);
      if (start <= now + 0.25) found = item;
      else break;
    }
    if (found && now > Number(found.dataset.end) + 1) found = null;
    if (found === this.current) return;
    if (this.current) this.current.removeAttribute("aria-current");
    this.current = found;
    if (!found) return;
    found.setAttribute("aria-current", "true");
    const list = this.list;
    const top = found.offsetTop; // the list is positioned: offsets are within it
    if (top < list.scrollTop || top + found.offsetHeight > list.scrollTop + list.clientHeight) {
      list.scrollTop = Math.max(0, top - list.clientHeight / 3);
    }
  }
}
