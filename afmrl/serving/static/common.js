// Shared by the search and the duplicate review pages: health line, attribute chips, result cards.
"use strict";

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children || []) node.append(c);
  return node;
}

async function showHealth() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("/health");
    const h = await r.json();
    status.textContent = h.serving
      ? `${h.serving.collection} · encoder ${h.serving.version ? "v" + h.serving.version : h.serving.encoder} · ${h.backend}`
      : `not ready: ${h.pending || h.status}`;
  } catch (e) { status.textContent = "service unreachable"; }
}

function attributeChips(compare) {
  const box = el("div", {class: "attrs"});
  for (const [k, v] of Object.entries(compare.agree || {})) {
    box.append(el("span", {class: "attr agree", title: "agrees with the query", "data-key": k, text: `${k}: ${v}`}));
  }
  for (const [k, v] of Object.entries(compare.differ || {})) {
    box.append(el("span", {class: "attr differ", title: `the query says ${v.query}`, "data-key": k,
                           text: `${k}: ${v.candidate} ≠ ${v.query}`}));
  }
  for (const [k, v] of Object.entries(compare.only_candidate || {})) {
    box.append(el("span", {class: "attr other", "data-key": k, text: `${k}: ${v}`}));
  }
  return box;
}

function thumb(url, alt) {
  const t = el("div", {class: "thumb"});
  if (url) t.append(el("img", {src: url, alt: alt || "", loading: "lazy"}));
  else t.append(el("span", {class: "noimg", text: "no image"}));
  return t;
}

function card(hit) {
  const c = el("div", {class: "card", "data-listing": hit.listing_id});
  c.append(thumb(hit.image_url, hit.title));
  c.append(el("div", {class: "title", text: hit.title || hit.listing_id}));
  const pct = Math.max(0, Math.min(1, hit.score)) * 100;
  const bar = el("div", {class: "bar"}, [el("div", {style: `width:${pct.toFixed(0)}%`})]);
  c.append(el("div", {class: "meta"}, [
    el("span", {class: "score", text: `#${hit.rank} · score ${hit.score.toFixed(3)}`}),
    document.createTextNode(` · ${hit.listing_id}` + (hit.price != null ? ` · ${hit.price}` : "") +
                            (hit.category ? ` · ${hit.category}` : "")),
  ]));
  c.append(bar);
  if (hit.compare) c.append(attributeChips(hit.compare));
  const more = el("a", {href: "#", class: "meta", text: "find identical to this one"});
  more.addEventListener("click", (e) => { e.preventDefault(); window.similarTo && window.similarTo(hit.listing_id); });
  c.append(more);
  return c;
}
