// The search page: a text and/or a dropped photo -> POST /search -> result cards.
"use strict";
const form = document.getElementById("query");
const fileInput = document.getElementById("file");
const drop = document.getElementById("drop");
const preview = document.getElementById("preview");
const message = document.getElementById("message");
const summary = document.getElementById("summary");
const results = document.getElementById("results");
let photo = null;

function setPhoto(file) {
  photo = file;
  if (file) {
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    document.getElementById("droptext").textContent = file.name;
  } else {
    preview.hidden = true;
    preview.removeAttribute("src");
    document.getElementById("droptext").textContent = "Drop a photo here, or click to choose one";
  }
}

fileInput.addEventListener("change", () => setPhoto(fileInput.files[0] || null));
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) setPhoto(e.dataTransfer.files[0]);
});
document.getElementById("clear").addEventListener("click", () => {
  form.reset(); setPhoto(null); results.replaceChildren(); summary.textContent = ""; message.textContent = "";
});

function render(body) {
  results.replaceChildren(...body.results.map(card));
  const q = body.query;
  const what = q.listing_id ? `listing ${q.listing_id}` : [q.text ? `“${q.text}”` : null, q.image ? "a photo" : null]
    .filter(Boolean).join(" + ");
  const t = body.timing;
  summary.textContent = `${body.results.length} candidates for ${what} in ${body.collection}` +
    ` · ${t.total_ms.toFixed(0)} ms (encode ${t.encode_ms.toFixed(0)}, search ${t.search_ms.toFixed(0)})`;
  if (!body.results.length) results.append(el("div", {class: "empty", text: "no candidates"}));
}

async function call(request) {
  message.textContent = "";
  summary.textContent = "searching…";
  try {
    const r = await request;
    const body = await r.json();
    if (!r.ok) { message.textContent = `${r.status}: ${body.detail}`; summary.textContent = ""; return; }
    render(body);
  } catch (e) {
    message.textContent = `request failed: ${e}`;
    summary.textContent = "";
  }
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const data = new FormData();
  const text = document.getElementById("text").value;
  if (text.trim()) data.append("text", text);
  if (photo) data.append("image", photo, photo.name);
  data.append("k", document.getElementById("k").value || "10");
  if (!text.trim() && !photo) { message.textContent = "type a title or drop a photo"; return; }
  call(fetch("/search", {method: "POST", body: data}));
});

window.similarTo = (id) => {
  const k = document.getElementById("k").value || "10";
  call(fetch(`/listings/${encodeURIComponent(id)}/similar?k=${encodeURIComponent(k)}`));
};

showHealth();
