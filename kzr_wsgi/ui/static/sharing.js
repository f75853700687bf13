// Share links from the page: make one for a recording (its expiry chosen), copy it, see
// the recording's links and revoke them. Each request carries the session's CSRF token.
// The API answers the link's path unless the server knows its public address: the page
// completes it with its own origin (never anything the request said).

import { el, getJSON, when } from "./dom.js";

const EXPIRIES = [["1h", "1 hour"], ["1d", "1 day"], ["7d", "7 days"], ["30d", "30 days"]];
let made = 0;

function csrfHeaders() {
  const meta = document.querySelector('meta[name="kzr-csrf"]');
  return { "X-CSRF-Token": meta ? meta.content : "" };
}

/** ``url`` as a whole address: a path gets the page's origin. */
export function absolute(url) {
  return new URL(url, window.location.origin).href;
}

async function copy(text, input, note) {
  try {
    await navigator.clipboard.writeText(text);
    note.textContent = "Copied.";
  } catch (error) {
    // No clipboard access (an insecure origin): the link is selected to copy by hand.
    input.focus();
    input.select();
    note.textContent = "Selected: copy it with Ctrl+C.";
  }
}

/** The share section of an opened recording (``row`` is its API item). */
export function shareSection(item) {
  made += 1;
  const expiryId = `expiry-${made}`, linkId = `link-${made}`;
  const expiry = el("select", { id: expiryId, name: "expires_in" },
    ...EXPIRIES.map(([value, label]) => el("option", { value, selected: value === "7d" }, label)));
  const makeButton = el("button", { type: "button", class: "make-link" }, "Make a link");
  const link = el("input", { id: linkId, class: "link", readonly: true, value: "" });
  const copyButton = el("button", { type: "button", class: "copy-link" }, "Copy");
  const note = el("span", { class: "note", role: "status" });
  const shown = el("div", { class: "made", hidden: true },
    el("label", { for: linkId }, "Link"), link, copyButton, note);
  const list = el("ul", { class: "links", "aria-label": "Links to this recording" });
  const section = el("section", { class: "sharing", "aria-label": "Share" },
    el("h4", {}, "Share a link"),
    el("div", { class: "make" }, el("label", { for: expiryId }, "Expires after"), expiry,
      makeButton),
    shown, list);
  makeButton.addEventListener("click", async () => {
    note.textContent = "";
    const answer = await getJSON(`api/recordings/${encodeURIComponent(item.id)}/shares`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", ...csrfHeaders() },
      body: JSON.stringify({ expires_in: expiry.value }),
    });
    if (!answer.ok) {
      note.textContent = `Cannot make a link: ${(answer.body && answer.body.error) || answer.status}`;
      shown.hidden = false;
      return;
    }
    link.value = absolute(answer.body.url);
    shown.hidden = false;
    note.textContent = `Expires ${when(answer.body.expires_at)}.`;
    refresh(item, list);
  });
  copyButton.addEventListener("click", () => copy(link.value, link, note));
  refresh(item, list);
  return section;
}

async function refresh(item, list) {
  const answer = await getJSON("api/shares");
  if (!answer.ok) return;
  const mine = answer.body.items.filter((s) => s.recording_id === item.id && s.status === "active");
  list.replaceChildren(...mine.map((share) => {
    const revoke = el("button", { type: "button", class: "revoke", "data-share-id": share.id,
      "aria-label": `Revoke the link that expires ${when(share.expires_at)}` }, "Revoke");
    revoke.addEventListener("click", async () => {
      const response = await fetch(`api/shares/${encodeURIComponent(share.id)}`, {
        method: "DELETE", credentials: "same-origin", headers: csrfHeaders(),
      });
      if (response.ok || response.status === 404) refresh(item, list);
    });
    return el("li", { "data-share-id": share.id },
      el("span", {}, `Link made ${when(share.created_at)}, expires ${when(share.expires_at)}`),
      " ", revoke);
  }));
}
