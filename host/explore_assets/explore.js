// SPDX-License-Identifier: MIT
// The connhost explorer's small enhancements; every page works without
// them (the server renders it). Nothing here writes markup: rows are
// hidden or shown, forms submitted.
"use strict";

document.documentElement.dataset.js = "on";

// Changing a run picker shows that comparison at once.
for (const sel of document.querySelectorAll("form.runs select"))
  sel.addEventListener("change", () => sel.form.submit());

// A filter box over each longer table: hides the rows without the text.
for (const t of document.querySelectorAll("table[data-table]")) {
  const rows = t.tBodies[0] ? Array.from(t.tBodies[0].rows) : [];
  if (rows.length < 10) continue;
  const box = document.createElement("input");
  box.type = "search";
  box.className = "filter";
  box.placeholder = "filter these rows";
  box.setAttribute("aria-label", "filter the rows of " + t.dataset.table);
  box.addEventListener("input", () => {
    const q = box.value.toLowerCase();
    for (const r of rows) r.hidden = q !== "" && !r.textContent.toLowerCase().includes(q);
  });
  t.parentNode.before(box);
}
