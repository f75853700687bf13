// Exports from the page: the checked results, or everything the search matches, as one
// ZIP (POST api/export with the session's CSRF token). The server streams the ZIP as it
// makes it; the page shows how much has arrived and saves it under the server's name.

import { el, size } from "./dom.js";

const FOLD = 8 * 1024 * 1024;

function csrf() {
  const meta = document.querySelector('meta[name="kzr-csrf"]');
  return meta ? meta.content : "";
}

// The file name a Content-Disposition gives (its UTF-8 form first).
function fileName(disposition) {
  const text = disposition || "";
  const utf8 = /filename\*=UTF-8''([^;]+)/i.exec(text);
  if (utf8) {
    try { return decodeURIComponent(utf8[1]); } catch (error) { /* the plain one */ }
  }
  const plain = /filename="([^"]+)"/i.exec(text);
  return plain ? plain[1] : "recordings.zip";
}

async function download(body, status) {
  status.textContent = "Preparing the export…";
  const response = await fetch("api/export", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    let message = String(response.status);
    try { message = (await response.json()).error || message; } catch (error) { /* status */ }
    status.textContent = `Cannot export: ${message}`;
    return;
  }
  // What has arrived is folded into a Blob every few megabytes: the browser keeps a
  // large Blob on disk, so a big export does not pile up in the page's memory.
  let saved = new Blob([]);
  let chunks = [], pending = 0, received = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    pending += value.length;
    received += value.length;
    if (pending >= FOLD) {
      saved = new Blob([saved, ...chunks]);
      chunks = [];
      pending = 0;
    }
    status.textContent = `Exporting… ${size(received)}`;
  }
  const url = URL.createObjectURL(new Blob([saved, ...chunks], { type: "application/zip" }));
  const link = el("a", { href: url, download: fileName(response.headers.get("Content-Disposition")) });
  document.body.append(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 60000);
  status.textContent = `Exported ${size(received)}.`;
}

/** The export bar above ``list``'s results; ``api`` is the search's API parameters. */
export function exportBar(bar, list, api) {
  const filters = {};
  for (const [name, value] of api) {
    if (name === "cursor" || name === "limit") continue;
    filters[name] = name in filters ? [].concat(filters[name], value) : value;
  }
  const status = el("span", { class: "note", role: "status" });
  const selected = el("button", { type: "button", id: "export-selected", disabled: true },
    "Export selected");
  const everything = el("button", { type: "button", id: "export-all" },
    "Export everything that matches");
  const picks = () => [...list.querySelectorAll("input.pick:checked")].map((box) => box.value);
  const count = () => {
    const n = picks().length;
    selected.disabled = n === 0;
    selected.textContent = n ? `Export selected (${n})` : "Export selected";
  };
  list.addEventListener("change", (event) => { if (event.target.matches("input.pick")) count(); });
  selected.addEventListener("click", () => download({ ids: picks() }, status));
  everything.addEventListener("click", () => download({ filters }, status));
  bar.replaceChildren(selected, everything, status);
  bar.hidden = !list.children.length;
}
