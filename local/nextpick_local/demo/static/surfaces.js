"use strict";
// The storefront's other surfaces (docs/storefront.md), beside "Recommended for you" (app.js):
//   Trending now          GET /trending?k=&category=             what shoppers act on now, for anyone
//   On a product view     GET /items/{id}/similar?k=             items like the one viewed
//                         GET /items/{id}/bought-together?k=     items bought with it
//   In the cart           POST /recommendations/cart?k=&rules=   {items, user_id}: what completes the cart
// Every call carries the shown shopper's token (callAs in app.js); nothing here holds a key. An item
// answer's `source: "fallback"` (the model could not answer for that item: live trending in its category
// instead) is shown as a label, never hidden. Loaded before app.js; the names below are used from there.

const SURFACE_K = 6;
// POST /recommendations/cart takes at most 50 items; a longer cart keeps its first 50 here.
const CART_LIMIT = 50;
const TRENDING_POLL_MS = 30000;

// Labels of the answers' provenance fields (docs/trending.md, docs/storefront.md).
const COLD_START_LABELS = {
  live_trending: "new shopper: live trending",
  model_trending: "new shopper: the model's trending list",
  model_trending_live_unavailable: "fallback: live trending unavailable, the model's trending list",
};

// One compact list of items (title, category, score, the promotion badge, a View button). `list` gets
// data-items for tests and tools; each row data-item-id and, when a promotion placed it, data-promotion.
function renderItemRows(list, items) {
  list.replaceChildren();
  for (const entry of items) {
    const row = document.createElement("li");
    row.className = "item-row";
    row.dataset.itemId = entry.item_id;
    const product = state.productById.get(entry.item_id);
    const text = document.createElement("div");
    text.className = "rec-text";
    const title = document.createElement("span");
    title.className = "rec-title";
    title.textContent = titleOf(entry.item_id);
    const meta = document.createElement("span");
    meta.className = "rec-meta";
    meta.textContent = `${product ? product.category : "not in catalog"} · score ${Number(entry.score).toFixed(3)}`;
    text.append(title, meta);
    if (entry.promotion) text.append(promotionBadge(entry.promotion));
    const view = document.createElement("button");
    view.type = "button";
    view.className = "button button-small button-secondary";
    view.textContent = "View";
    view.setAttribute("aria-label", `View: ${titleOf(entry.item_id)}`);
    view.addEventListener("click", () => track(entry.item_id, "view"));
    if (entry.promotion) row.dataset.promotion = entry.promotion;
    row.append(text, view);
    list.append(row);
  }
  list.dataset.items = items.map((entry) => entry.item_id).join(",");
}

// The badge on a pick a promotion of the page's rule set placed (the answer's `promotion`, docs/rules.md).
function promotionBadge(name) {
  const badge = document.createElement("span");
  badge.className = "promo-badge";
  badge.textContent = name;
  badge.title = `Promoted: the "${name}" promotion of the shop's rule set placed this item`;
  return badge;
}

// The small provenance label of a panel: hidden when there is nothing to say.
function setSourceLabel(element, text, fallback) {
  element.textContent = text || "";
  element.hidden = !text;
  element.classList.toggle("source-fallback", Boolean(fallback));
}

// A panel's answer arrived (or failed): count it, so a test can wait for the redraw.
function markUpdated(panel, fields) {
  Object.assign(panel.dataset, fields);
  panel.dataset.updates = String(Number(panel.dataset.updates || "0") + 1);
}

function surfaceError(element, error) {
  element.textContent = error.status ? `The API answered ${error.status}: ${error.message}` : String(error.message);
  element.hidden = false;
}

// ---- trending now ---------------------------------------------------------------------------------

async function loadTrending() {
  const panel = $("trending-panel");
  const params = new URLSearchParams({ k: String(SURFACE_K) });
  const category = $("category-select").value;
  if (category) params.set("category", category);
  $("trending-scope").textContent = category ? `in ${category}` : "all categories";
  try {
    const { data } = await callAs(state.shopper, "GET", `/trending?${params}`);
    $("trending-error").hidden = true;
    renderItemRows($("trending-list"), data.items || []);
    $("trending-empty").hidden = (data.items || []).length > 0;
    markUpdated(panel, { status: "ok" });
  } catch (error) {
    renderItemRows($("trending-list"), []);
    surfaceError($("trending-error"), error);
    markUpdated(panel, { status: "error" });
  }
}

// ---- the product view: similar items and bought together -----------------------------------------

async function loadItemSurface(itemId, route, prefix) {
  const list = $(`${prefix}-list`);
  const label = $(`${prefix}-source`);
  const error = $(`${prefix}-error`);
  try {
    const path = `/items/${encodeURIComponent(itemId)}/${route}?k=${SURFACE_K}`;
    const { data } = await callAs(state.shopper, "GET", path);
    error.hidden = true;
    renderItemRows(list, data.items || []);
    const fallback = data.source === "fallback";
    setSourceLabel(label, fallback ? "fallback: trending in this category" : "", fallback);
    list.dataset.source = data.source || "";
    $(`${prefix}-empty`).hidden = (data.items || []).length > 0;
  } catch (failure) {
    renderItemRows(list, []);
    list.dataset.source = "error";
    setSourceLabel(label, "", false);
    $(`${prefix}-empty`).hidden = true;
    surfaceError(error, failure);
  }
}

async function showProduct(itemId) {
  const panel = $("product-panel");
  panel.hidden = false;
  $("product-title").textContent = titleOf(itemId);
  const product = state.productById.get(itemId);
  $("product-meta").textContent = product ? `${product.category} · ${formatPrice(product.price)}` : itemId;
  await Promise.all([
    loadItemSurface(itemId, "similar", "similar"),
    loadItemSurface(itemId, "bought-together", "together"),
  ]);
  markUpdated(panel, { itemId });
}

// ---- the cart and what completes it ----------------------------------------------------------------

// The page keeps each shopper's cart, as a shop's page does (nextpick keeps no cart).
function cartOf(userId) {
  if (!state.carts.has(userId)) state.carts.set(userId, []);
  return state.carts.get(userId);
}

// The cart once `event` is applied (a new array; `cart` itself is left as it is).
function cartAfter(cart, event) {
  const itemId = event.item_id;
  if (event.event_type === "add_to_cart" && !cart.includes(itemId) && cart.length < CART_LIMIT) return [...cart, itemId];
  if (event.event_type === "purchase" || event.event_type === "remove_from_cart") return cart.filter((i) => i !== itemId);
  return cart;
}

function renderCartItems(cart) {
  const list = $("cart-items");
  list.replaceChildren();
  for (const itemId of cart) {
    const row = document.createElement("li");
    row.className = "item-row";
    row.dataset.itemId = itemId;
    const title = document.createElement("span");
    title.className = "rec-title";
    title.textContent = titleOf(itemId);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button button-small button-secondary";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove from cart: ${titleOf(itemId)}`);
    remove.addEventListener("click", () => track(itemId, "remove_from_cart"));
    row.append(title, remove);
    list.append(row);
  }
  list.dataset.items = cart.join(",");
  $("cart-empty").hidden = cart.length > 0;
}

async function loadCart() {
  const panel = $("cart-panel");
  const cart = [...cartOf(state.shopper)];
  renderCartItems(cart);
  if (!cart.length) {
    renderItemRows($("cart-recs"), []);
    $("cart-error").hidden = true;
    markUpdated(panel, { status: "empty" });
    return;
  }
  const params = new URLSearchParams({ k: String(SURFACE_K) });
  if (window.NEXTPICK_CONFIG && window.NEXTPICK_CONFIG.ruleSet) params.set("rules", window.NEXTPICK_CONFIG.ruleSet);
  try {
    const body = { items: cart, user_id: state.shopper };
    const { data } = await callAs(state.shopper, "POST", `/recommendations/cart?${params}`, body);
    $("cart-error").hidden = true;
    renderItemRows($("cart-recs"), data.recommendations || []);
    markUpdated(panel, { status: "ok" });
  } catch (error) {
    renderItemRows($("cart-recs"), []);
    surfaceError($("cart-error"), error);
    markUpdated(panel, { status: "error" });
  }
}

// After an event the page sent was accepted (`cart`: cartAfter's answer for it): the surfaces it changes.
function afterEvent(event, cart) {
  if (event.event_type === "view" || event.event_type === "click") showProduct(event.item_id);
  const before = cartOf(event.user_id);
  if (cart.length !== before.length || cart.some((itemId, i) => itemId !== before[i])) {
    state.carts.set(event.user_id, cart);
    if (event.user_id === state.shopper) loadCart();
  }
}

// A shopper was selected (or created): their cart, today's trending, no product in view.
function surfacesForShopper() {
  $("product-panel").hidden = true;
  loadCart();
  return loadTrending();
}
