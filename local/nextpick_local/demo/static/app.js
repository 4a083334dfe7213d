"use strict";
// The demo storefront: every button sends a real event through the public API (POST /events, with the
// shopper's token) and the "Recommended for you" panel is redrawn from that same response. Nothing
// here is faked on the client: titles come from the local catalog listing, everything else from the API.
//
// The page holds no key: like a shop's page it only ever has a shopper token, bound to the shopper it
// shows, which may send that shopper's events and read their recommendations and nothing else
// (docs/security.md). What it needs from the local server (local/nextpick_local, `nextpick serve`):
//   window.NEXTPICK_CONFIG  injected into the page: {demoUsers: ["alice", ...], ...}; without
//                           demoUsers the page starts with a brand-new shopper only.
//   POST /_local/shopper-token {user_id}
//                           -> {token, user_id, expires_in}: a shopper token for that user. A shop's
//                           backend mints it once its login knows the shopper; the demo has no login.
//   GET /_local/catalog     -> {items: [{item_id, title, category, price, stock}, ...]}: the products
//                           to show. The public API has no catalog listing, so the local stack
//                           exposes one (no credential, like the rest of /_local).
//   GET /_local/model       -> what GET /model answers the shop's backend (a shopper token may not
//                           call GET /model): the model version for the header badge.
//   GET /_local/report      -> `nextpick report` over the stack's event log (docs/attribution.md):
//                           the "Online report" panel's numbers, per A/B variant.
// With `ruleSet` in the config (the demo's "storefront", docs/storefront.md) the picks are asked for
// with `rules=<it>`, and a pick its promotion placed carries `promotion`: shown as a badge.
// Trending, the product view's similar / bought-together lists and the cart are in surfaces.js.
// API calls use paths relative to the page: the page is always served by the API's own server, and a
// configured absolute URL with another host spelling (localhost vs 127.0.0.1) would make them
// cross-origin, which the API (like API Gateway without CORS) refuses.

const PAGE_SIZE = 24;
const RECS_K = 10;
const LOG_LENGTH = 15;
const MODEL_POLL_MS = 10000;

const EVENT_LABELS = {
  view: "View",
  click: "Open pick",
  add_to_cart: "Add to cart",
  purchase: "Buy",
  remove_from_cart: "Remove from cart",
};
const REPORT_POLL_MS = 30000;

const state = {
  // user_id -> Promise of their shopper token (one mint at a time per shopper).
  tokens: new Map(),
  products: [],
  productById: new Map(),
  shown: 0,
  shopper: "",
  sessionId: "",
  recs: [],
  // The answer the picks panel shows: events on its picks cite it (docs/attribution.md).
  recommendationId: "",
  updates: 0,
  lastEvent: null,
  // user_id -> the item ids in their cart, in the order added (surfaces.js).
  carts: new Map(),
};

const $ = (id) => document.getElementById(id);

// crypto.randomUUID only exists in secure contexts (https, localhost); the page may be opened
// over a LAN address, so fall back to the same format built from getRandomValues.
function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.details = (body && body.errors) || [];
  }
}

// One call to the API (with a shopper token) or to a local-only route (without); returns the parsed
// body and the measured round trip.
async function call(method, path, body, token) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const started = performance.now();
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const rttMs = performance.now() - started;
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text.slice(0, 200) };
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { data, rttMs };
}

// The shopper token of `userId`: the one already minted, or (`renew`, or none yet) a new one.
function shopperToken(userId, renew) {
  if (renew || !state.tokens.has(userId)) {
    const minted = call("POST", "/_local/shopper-token", { user_id: userId }).then(({ data }) => data.token);
    // A failed mint is forgotten, so the next call asks again.
    minted.catch(() => state.tokens.get(userId) === minted && state.tokens.delete(userId));
    state.tokens.set(userId, minted);
  }
  return state.tokens.get(userId);
}

// An API call on behalf of `userId`, with their shopper token. A 401 means the token expired (900 s)
// or the stack's keys were rotated: get a new token and send the call once more. Sending again is
// safe: API Gateway refused the first one before any function saw it (and events carry an event_id).
async function callAs(userId, method, path, body) {
  try {
    return await call(method, path, body, await shopperToken(userId, false));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    return call(method, path, body, await shopperToken(userId, true));
  }
}

// `cart`: the shopper's cart as it will be once the call is applied; its items are never recommended
// (`exclude_items`, docs/rules.md): "Complete your cart" is where they lead.
function recommendQuery(cart = cartOf(state.shopper)) {
  const params = new URLSearchParams({ k: String(RECS_K) });
  params.set("exclude_purchased", $("exclude-purchased").checked ? "true" : "false");
  const category = $("category-select").value;
  if ($("picks-in-category").checked && category) params.set("category", category);
  const ruleSet = window.NEXTPICK_CONFIG && window.NEXTPICK_CONFIG.ruleSet;
  if (ruleSet) params.set("rules", ruleSet);
  if (cart.length) params.set("exclude_items", cart.join(","));
  // Each pick says which of the shopper's own items it owes most to (docs/explanations.md).
  params.set("explain", "true");
  return params.toString();
}

function showError(error) {
  const banner = $("error-banner");
  banner.replaceChildren();
  const title = document.createElement("strong");
  title.textContent = error.status ? `The API answered ${error.status}: ${error.message}` : String(error.message);
  banner.append(title);
  if (error.details && error.details.length) {
    const list = document.createElement("ul");
    for (const detail of error.details) {
      const item = document.createElement("li");
      item.textContent = `${detail.field}: ${detail.message}`;
      list.append(item);
    }
    banner.append(list);
  }
  banner.hidden = false;
}

function clearError() {
  $("error-banner").hidden = true;
}

function formatMs(ms) {
  return ms === undefined || ms === null ? "–" : `${Number(ms).toFixed(ms < 10 ? 2 : 1)} ms`;
}

// The demo shop's prices carry no currency; the page shows them in euros.
function formatPrice(price) {
  return new Intl.NumberFormat(undefined, { style: "currency", currency: "EUR" }).format(price);
}

function titleOf(itemId) {
  const product = state.productById.get(itemId);
  return (product && product.title) || itemId;
}

// A stable hue per category so cards of one category share a colour.
function hueOf(text) {
  let hash = 0;
  for (const ch of text) hash = (hash * 31 + ch.charCodeAt(0)) % 360;
  return hash;
}

function setModelVersion(version) {
  const label = version ? `model ${version}` : "no model yet";
  $("model-badge").textContent = label;
  $("model-badge").classList.toggle("badge-warn", !version);
}

// ---- catalog ---------------------------------------------------------------------------------

function visibleProducts() {
  const category = $("category-select").value;
  return category ? state.products.filter((p) => p.category === category) : state.products;
}

// The catalog comes grouped by category; interleave the categories so that the first rows of
// "All categories" show the whole shop rather than a single aisle.
function interleaved(products) {
  const aisles = new Map();
  for (const product of products) {
    if (!aisles.has(product.category)) aisles.set(product.category, []);
    aisles.get(product.category).push(product);
  }
  const mixed = [];
  for (let row = 0; mixed.length < products.length; row += 1) {
    for (const aisle of aisles.values()) if (row < aisle.length) mixed.push(aisle[row]);
  }
  return mixed;
}

function stockBadge(element, stock) {
  element.className = "stock";
  if (stock <= 0) {
    element.textContent = "Out of stock";
    element.classList.add("stock-out");
  } else if (stock < 10) {
    element.textContent = `Only ${stock} left`;
    element.classList.add("stock-low");
  } else {
    element.textContent = "In stock";
    element.classList.add("stock-ok");
  }
}

function productCard(product) {
  const card = $("product-card").content.firstElementChild.cloneNode(true);
  card.dataset.itemId = product.item_id;
  const art = card.querySelector(".card-art");
  art.style.setProperty("--hue", hueOf(product.category));
  art.setAttribute("aria-label", `Picture of ${product.title}, category ${product.category}`);
  art.textContent = product.category;
  card.querySelector(".card-title").textContent = product.title;
  card.querySelector(".card-id").textContent = product.item_id;
  card.querySelector(".card-price").textContent = formatPrice(product.price);
  stockBadge(card.querySelector(".stock"), product.stock);
  for (const button of card.querySelectorAll("button[data-event]")) {
    button.setAttribute("aria-label", `${button.textContent}: ${product.title}`);
    // Nobody can add to cart or buy what is not in stock; viewing it is still a signal.
    if (button.dataset.event !== "view" && product.stock <= 0) button.disabled = true;
    button.addEventListener("click", () => track(product.item_id, button.dataset.event));
  }
  return card;
}

function renderProducts(reset) {
  const grid = $("product-grid");
  const products = visibleProducts();
  if (reset) {
    grid.replaceChildren();
    state.shown = 0;
  }
  const next = products.slice(state.shown, state.shown + PAGE_SIZE);
  grid.append(...next.map(productCard));
  state.shown += next.length;
  $("catalog-count").textContent = `${state.shown} of ${products.length} shown`;
  $("show-more").hidden = state.shown >= products.length;
}

// ---- recommendations ---------------------------------------------------------------------------

function movementOf(itemId, rank, previousRanks) {
  if (!state.recs.length) return { text: "", label: "" };
  if (!previousRanks.has(itemId)) return { text: "new", label: "entered the list", kind: "up" };
  const moved = previousRanks.get(itemId) - rank;
  if (moved > 0) return { text: `▲${moved}`, label: `up ${moved}`, kind: "up" };
  if (moved < 0) return { text: `▼${-moved}`, label: `down ${-moved}`, kind: "down" };
  return { text: "", label: "" };
}

// "because Classic Coffee 62%, Eco Grinder 21%": the shopper's own items behind a pick and their shares
// of what adds to its score (the answer's `because`, asked with explain=true).
function becauseLine(because) {
  const line = document.createElement("span");
  line.className = "rec-because";
  line.textContent = `because ${because.map((b) => `${titleOf(b.item_id)} ${Math.round(b.share * 100)}%`).join(", ")}`;
  return line;
}

function renderRecommendations(body, rttMs, reason) {
  const recs = body.recommendations || [];
  const previousRanks = new Map(state.recs.map((r, i) => [r.item_id, i]));
  const list = $("recs-list");
  list.replaceChildren();
  const topScore = recs.length ? Math.max(...recs.map((r) => Math.abs(r.score))) || 1 : 1;
  recs.forEach((rec, rank) => {
    const item = document.createElement("li");
    item.className = "rec";
    item.dataset.itemId = rec.item_id;
    const product = state.productById.get(rec.item_id);
    item.dataset.category = product ? product.category : "";
    const movement = movementOf(rec.item_id, rank, previousRanks);

    const text = document.createElement("div");
    text.className = "rec-text";
    const title = document.createElement("span");
    title.className = "rec-title";
    title.textContent = titleOf(rec.item_id);
    const meta = document.createElement("span");
    meta.className = "rec-meta";
    meta.textContent = `${product ? product.category : "not in catalog"} · score ${rec.score.toFixed(3)}`;
    const bar = document.createElement("span");
    bar.className = "score-bar";
    bar.style.setProperty("--fill", `${Math.max(4, (Math.abs(rec.score) / topScore) * 100)}%`);
    bar.setAttribute("aria-hidden", "true");
    text.append(title, meta, bar);
    if (rec.promotion) {
      text.append(promotionBadge(rec.promotion));
      item.dataset.promotion = rec.promotion;
    }
    if (rec.because && rec.because.length) text.append(becauseLine(rec.because));

    const change = document.createElement("span");
    change.className = `rec-change ${movement.kind ? `rec-change-${movement.kind}` : ""}`;
    change.textContent = movement.text;
    if (movement.label) change.title = movement.label;

    const view = document.createElement("button");
    view.type = "button";
    view.className = "button button-small button-secondary";
    view.textContent = "View";
    view.setAttribute("aria-label", `View: ${titleOf(rec.item_id)}`);
    // Opening a pick is a click on the list: it cites the answer (docs/attribution.md).
    view.addEventListener("click", () => track(rec.item_id, "click"));

    item.append(text, change, view);
    list.append(item);
  });
  state.recs = recs;
  state.updates += 1;

  const panel = $("recs-panel");
  panel.dataset.modelVersion = body.model_version || "";
  panel.dataset.recommendationId = body.recommendation_id || "";
  state.recommendationId = body.recommendation_id || "";
  panel.dataset.items = recs.map((r) => r.item_id).join(",");
  panel.dataset.updates = String(state.updates);
  panel.dataset.coldStart = body.cold_start || "";
  panel.dataset.promoted = recs.filter((r) => r.promotion).map((r) => r.item_id).join(",");
  const fallbackModel = body.model_status && body.model_status !== "live";
  const source = fallbackModel ? `fallback: model ${body.model_status}` : COLD_START_LABELS[body.cold_start];
  setSourceLabel($("recs-source"), source, fallbackModel || (body.cold_start || "").includes("live_unavailable"));
  $("recs-version").textContent = body.model_version ? `model ${body.model_version}` : "no model";
  $("recs-for").textContent = `For ${body.user_id} · ${reason}`;
  $("took-ms").textContent = formatMs(body.took_ms);
  $("rtt-ms").textContent = formatMs(rttMs);
  $("updated-at").textContent = new Date().toLocaleTimeString();
  $("recs-empty").hidden = recs.length > 0;
  setModelVersion(body.model_version);
}

async function loadRecommendations() {
  const path = `/users/${encodeURIComponent(state.shopper)}/recommendations?${recommendQuery()}`;
  try {
    const { data, rttMs } = await callAs(state.shopper, "GET", path);
    clearError();
    renderRecommendations(data, rttMs, "current picks");
  } catch (error) {
    showError(error);
  }
}

// ---- events ------------------------------------------------------------------------------------

function logEntry(event, outcome) {
  const entry = document.createElement("li");
  entry.className = "log-entry";
  const when = document.createElement("time");
  when.dateTime = event.timestamp;
  when.textContent = new Date(event.timestamp).toLocaleTimeString();
  const what = document.createElement("span");
  what.className = "log-what";
  what.textContent = `${EVENT_LABELS[event.event_type] || event.event_type} · ${titleOf(event.item_id)}`;
  const status = document.createElement("span");
  status.className = `status status-${outcome.status}`;
  status.textContent = outcome.status;
  const timing = document.createElement("span");
  timing.className = "log-timing";
  const timings = outcome.tookMs === undefined ? "" : ` · ${formatMs(outcome.tookMs)} / ${formatMs(outcome.rttMs)}`;
  timing.textContent = `${event.user_id}${timings}`;
  entry.append(when, what, status, timing);

  const log = $("activity-log");
  log.prepend(entry);
  while (log.children.length > LOG_LENGTH) log.lastElementChild.remove();
  $("activity-empty").hidden = true;
}

async function send(event) {
  try {
    const cart = cartAfter(cartOf(event.user_id), event);
    const { data, rttMs } = await callAs(event.user_id, "POST", `/events?${recommendQuery(cart)}`, event);
    clearError();
    logEntry(event, { status: data.status, tookMs: data.took_ms, rttMs });
    const reason = data.status === "duplicate" ? "unchanged (duplicate event)" : `after ${EVENT_LABELS[event.event_type]}`;
    renderRecommendations(data, rttMs, reason);
    if (data.status === "accepted") afterEvent(event, cart);
  } catch (error) {
    logEntry(event, { status: error.status ? `rejected ${error.status}` : "failed" });
    showError(error);
  }
}

function track(itemId, eventType) {
  const product = state.productById.get(itemId);
  const event = {
    event_id: uuid(),
    user_id: state.shopper,
    item_id: itemId,
    event_type: eventType,
    timestamp: new Date().toISOString(),
    session_id: state.sessionId,
  };
  if (eventType === "add_to_cart" || eventType === "purchase") event.quantity = 1;
  if (eventType === "purchase" && product) event.price = product.price;
  // An event on one of the picks shown cites the answer that showed it (docs/attribution.md); the
  // report carries a purchase of a clicked pick over to its list when the pick has moved on.
  if (state.recommendationId && state.recs.some((rec) => rec.item_id === itemId)) {
    event.recommendation_id = state.recommendationId;
  }
  state.lastEvent = event;
  $("resend-last").disabled = false;
  return send(event);
}

// ---- shoppers ----------------------------------------------------------------------------------

function selectShopper(userId) {
  state.shopper = userId;
  state.sessionId = `web-${uuid()}`;
  state.recs = [];
  state.lastEvent = null;
  $("resend-last").disabled = true;
  $("shopper-select").value = userId;
  surfacesForShopper();
  return loadRecommendations();
}

function addShopperOption(userId, label) {
  const option = document.createElement("option");
  option.value = userId;
  option.textContent = label;
  $("shopper-select").append(option);
}

function newShopper() {
  const userId = `new-shopper-${uuid().slice(0, 8)}`;
  addShopperOption(userId, `${userId} (brand new)`);
  return selectShopper(userId);
}

// ---- start -------------------------------------------------------------------------------------

// ---- the online report (docs/attribution.md) ----------------------------------------------------

function percent(estimate) {
  const f = (x) => `${(100 * x).toFixed(1)}%`;
  return `${f(estimate.value)} [${f(estimate.low)}, ${f(estimate.high)}]`;
}

function renderReport(report) {
  const body = $("report-rows");
  body.replaceChildren();
  for (const row of report.variants) {
    const tr = document.createElement("tr");
    tr.dataset.variant = row.variant;
    const rpm = row.revenue_per_mille;
    const cells = [
      row.variant,
      String(row.impressions),
      percent(row.ctr),
      percent(row.add_to_cart_rate),
      percent(row.conversion),
      `${rpm.value.toFixed(2)} [${rpm.low.toFixed(2)}, ${rpm.high.toFixed(2)}]`,
    ];
    for (const [i, text] of cells.entries()) {
      const td = document.createElement("td");
      td.textContent = text;
      td.dataset.metric = ["variant", "impressions", "ctr", "add_to_cart_rate", "conversion", "revenue_per_mille"][i];
      tr.append(td);
    }
    body.append(tr);
  }
  const log = report.log;
  $("report-note").textContent =
    `${log.impressions} answers since ${new Date(report.window.start).toLocaleDateString()}; ` +
    `${log.cited} events cite one, ${log.carried_over} carried over. Updated ${new Date().toLocaleTimeString()}.`;
  $("report-panel").dataset.impressions = String(log.impressions);
  $("report-panel").dataset.updates = String(Number($("report-panel").dataset.updates || 0) + 1);
}

async function loadReport() {
  try {
    const { data } = await call("GET", "/_local/report");
    renderReport(data);
  } catch (error) {
    $("report-note").textContent = `report unavailable: ${error.message}`;
  }
}

async function refreshModelBadge() {
  try {
    const { data } = await call("GET", "/_local/model");
    setModelVersion(data.model_version);
  } catch {
    $("model-badge").textContent = "model: unavailable";
  }
}

async function start() {
  try {
    const config = window.NEXTPICK_CONFIG;
    if (!config) throw new Error("No NEXTPICK_CONFIG in the page: open it from `nextpick serve` (make local).");
    for (const user of config.demoUsers || []) addShopperOption(user, user);
    const { data: catalog } = await call("GET", "/_local/catalog");
    state.products = interleaved(catalog.items);
    state.productById = new Map(state.products.map((p) => [p.item_id, p]));
    for (const category of [...new Set(state.products.map((p) => p.category))].sort()) {
      const option = document.createElement("option");
      option.value = category;
      option.textContent = category;
      $("category-select").append(option);
    }
    $("catalog-badge").textContent = `${state.products.length} products`;
    renderProducts(true);
    await refreshModelBadge();
    setInterval(refreshModelBadge, MODEL_POLL_MS);
    setInterval(() => state.shopper && loadTrending(), TRENDING_POLL_MS);
    loadReport();
    setInterval(loadReport, REPORT_POLL_MS);
    if (config.demoUsers && config.demoUsers.length) await selectShopper(config.demoUsers[0]);
    else await newShopper();
  } catch (error) {
    showError(error);
  }
  document.body.dataset.ready = "true";
}

$("shopper-select").addEventListener("change", (e) => selectShopper(e.target.value));
$("new-shopper").addEventListener("click", newShopper);
$("category-select").addEventListener("change", () => {
  renderProducts(true);
  loadTrending();
  if ($("picks-in-category").checked) loadRecommendations();
});
$("picks-in-category").addEventListener("change", loadRecommendations);
$("exclude-purchased").addEventListener("change", loadRecommendations);
$("show-more").addEventListener("click", () => renderProducts(false));
$("resend-last").addEventListener("click", () => state.lastEvent && send(state.lastEvent));
$("report-refresh").addEventListener("click", loadReport);

start();
