// The duplicate review page: the dedup job's review queue (pairs side by side) and its groups.
"use strict";

async function listing(id) {
  const r = await fetch(`/listings/${encodeURIComponent(id)}`);
  return r.ok ? r.json() : {listing_id: id, title: null, attributes: {}, image_url: null, missing: true};
}

function compareAttrs(a, b) {
  const out = {agree: {}, differ: {}, only_candidate: {}};
  for (const [k, v] of Object.entries(b || {})) {
    if (!(k in (a || {}))) out.only_candidate[k] = v;
    else if (String(a[k]).toLowerCase() === String(v).toLowerCase()) out.agree[k] = v;
    else out.differ[k] = {query: a[k], candidate: v};
  }
  return out;
}

function side(label, item, versus) {
  const box = el("div", {class: "card", "data-listing": item.listing_id});
  box.append(el("h3", {text: `${label}: ${item.listing_id}` + (item.missing ? " (not in the served index)" : "")}));
  box.append(thumb(item.image_url, item.title));
  box.append(el("div", {class: "title", text: item.title || ""}));
  if (versus) box.append(attributeChips(compareAttrs(versus.attributes, item.attributes)));
  else box.append(attributeChips({only_candidate: item.attributes || {}}));
  return box;
}

async function load() {
  showHealth();
  const summary = document.getElementById("summary");
  const pairsBox = document.getElementById("pairs");
  const groupsBox = document.getElementById("groups");
  const r = await fetch("/api/dedup");
  const d = await r.json();
  if (!d.available) {
    const empty = el("div", {class: "empty", id: "dedup-empty", text: `Nothing to review: ${d.message}`});
    pairsBox.replaceChildren(empty);
    groupsBox.replaceChildren();
    summary.textContent = "";
    return;
  }
  summary.textContent = `${d.n_pairs} pairs to review (showing ${d.pairs.length}), ${d.n_groups} groups of 2 or more · ${d.source}`;
  pairsBox.replaceChildren();
  for (const p of d.pairs) {
    const [a, b] = await Promise.all([listing(p.listing_a), listing(p.listing_b)]);
    const pair = el("div", {class: "pair"});
    pair.append(el("div", {class: "meta", text: `score ${(p.score ?? 0).toFixed(3)}` +
      (p.threshold != null ? ` · threshold ${p.threshold.toFixed(3)}` : "") + (p.reason ? ` · ${p.reason}` : "")}));
    pair.append(el("div", {class: "sides"}, [side("A", a, null), side("B", b, a)]));
    pairsBox.append(pair);
  }
  if (!d.pairs.length) pairsBox.append(el("div", {class: "empty", text: "the review queue is empty"}));
  const table = el("table", {class: "groups"});
  table.append(el("tr", {}, [el("th", {text: "group"}), el("th", {text: "size"}), el("th", {text: "listings"})]));
  for (const g of d.groups) {
    table.append(el("tr", {}, [el("td", {text: g.group_id}), el("td", {text: String(g.listings.length)}),
                              el("td", {text: g.listings.join(", ")})]));
  }
  groupsBox.replaceChildren(d.groups.length ? table : el("div", {class: "empty", text: "no groups of 2 or more"}));
}

load();
