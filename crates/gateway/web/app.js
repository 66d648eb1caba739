// minimall's web UI: plain JavaScript against the gateway's /api, no build step.
// The customer orders, sees deposit instructions and every order live; the seller confirms
// deposits and manages stock.
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { token: sessionStorage.getItem("token"), name: null, role: null, live: null };

function euros(cents) {
  return (cents / 100).toLocaleString(undefined, { style: "currency", currency: "EUR" });
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function say(text, ok = false) {
  const message = $("#message");
  message.textContent = text;
  message.className = ok ? "ok" : "";
  message.hidden = !text;
}

async function api(method, path, body) {
  const headers = {};
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (response.status === 401 && path !== "/api/login") logout();
  if (!response.ok) throw new Error((data && data.detail) || `${response.status}`);
  return data;
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function button(label, className, action) {
  const node = element("button", { type: "button", class: className }, label);
  node.addEventListener("click", async () => {
    node.disabled = true;
    try { await action(); } catch (error) { say(error.message); } finally { node.disabled = false; }
  });
  return node;
}

// ---- session ---------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  try {
    const answer = await api("POST", "/api/login", {
      name: $("#login-name").value.trim(), password: $("#login-password").value,
    });
    state.token = answer.token;
    sessionStorage.setItem("token", answer.token);
    say("");
    await start();
  } catch (error) { say(error.message); }
}

function logout() {
  state.token = null;
  sessionStorage.removeItem("token");
  if (state.live) state.live.abort();
  show();
}

function show() {
  const role = state.token ? state.role : null;
  $("#login").hidden = !!role;
  $("#who").hidden = !role;
  $("#customer").hidden = role !== "customer";
  $("#seller").hidden = role !== "seller";
  $("#who-name").textContent = role ? `${state.name} (${role})` : "";
}

async function start() {
  if (!state.token) return show();
  try {
    const me = await api("GET", "/api/me");
    state.name = me.name;
    state.role = me.role;
  } catch { return logout(); }
  show();
  if (state.role === "customer") {
    await Promise.all([loadCatalogue(), loadMyOrders()]);
    follow();
  } else {
    await loadSeller();
    loadOnCall().catch((error) => say(`On-call view: ${error.message}`));
  }
}

// ---- customer --------------------------------------------------------------------------

async function loadCatalogue() {
  const products = await api("GET", "/api/products");
  $("#catalogue").replaceChildren(...products.map((p) => {
    const quantity = element("input", { type: "number", min: "1", max: "100", value: "1", class: "qty", "aria-label": "quantity" });
    return element("li", { class: "product", dataset: { productId: p.productId } },
      element("div", { class: "row" },
        element("div", {}, element("b", {}, p.name), element("div", { class: "muted" }, `${euros(p.price)} · ${p.stock} in stock`)),
        element("div", { class: "row" }, quantity,
          button("Order", "order", async () => {
            const placed = await api("POST", "/api/orders", { productId: p.productId, quantity: Number(quantity.value) });
            say("Order placed: pay by bank transfer with the details shown below.", true);
            const seen = await api("GET", `/api/orders/${placed.orderId}?atLeast=${placed.position}`);
            upsertOrder(seen);
            await loadCatalogue();
          }))));
  }));
}

async function loadMyOrders() {
  const orders = await api("GET", "/api/my/orders");
  $("#my-orders").replaceChildren();
  for (const order of orders) upsertOrder(order);
}

function orderCard(order) {
  const card = element("li", { class: "order-card", dataset: { orderId: order.orderId, status: order.status } });
  const deposit = order.deposit;
  const depositBox = deposit && !deposit.cancelled && !deposit.confirmedAt
    ? element("div", { class: "deposit" },
        element("div", {}, `Transfer ${euros(deposit.amount)} to ${deposit.account}`),
        element("div", {}, "Reference: ", element("b", { class: "reference" }, deposit.reference)),
        element("div", { class: "muted" }, `Due ${when(deposit.dueAt)}`))
    : null;
  const refund = deposit && deposit.refund ? element("div", { class: "muted" }, "Your payment is refunded.") : null;
  const actions = element("div", { class: "row" });
  if (order.status === "OrderPlaced" || order.status === "AwaitingDeposit") {
    actions.append(button("Cancel order", "cancel danger", async () => {
      await api("POST", `/api/orders/${order.orderId}/cancel`);
      say("Order cancelled.", true);
    }));
  }
  if (order.status === "Shipping") {
    actions.append(button("I received it", "receipt", async () => {
      await api("POST", `/api/orders/${order.orderId}/receipt`);
      say("Thank you! The order is closed.", true);
    }));
  }
  const timeline = order.timeline
    ? element("details", {}, element("summary", {}, "History"),
        element("ol", { class: "timeline" }, ...order.timeline.map((m) =>
          element("li", {}, `${when(m.at)} — ${m.eventType} (${m.actorKind}${m.status ? ` → ${m.status}` : ""})`))))
    : null;
  const parts = [
    element("div", { class: "row" },
      element("div", {}, element("b", {}, order.productName || "Product"), ` × ${order.quantity} · ${euros(order.amount)}`),
      element("span", { class: "status", dataset: { status: order.status } }, order.status)),
    element("div", { class: "muted" }, `Ordered ${when(order.placedAt)}${order.cancelReason ? ` · cancelled: ${order.cancelReason}` : ""}`),
    depositBox, refund, actions, timeline,
  ];
  card.append(...parts.filter((part) => part !== null));
  return card;
}

function upsertOrder(order) {
  const list = $("#my-orders");
  const card = orderCard(order);
  const existing = list.querySelector(`[data-order-id="${order.orderId}"]`);
  if (existing) existing.replaceWith(card); else list.prepend(card);
}

// Live updates over fetch (EventSource cannot send the token): server-sent events parsed by hand.
async function follow() {
  if (state.live) state.live.abort();
  const controller = new AbortController();
  state.live = controller;
  let pause = 500;
  while (!controller.signal.aborted && state.token) {
    try {
      const response = await fetch("/api/my/orders/live", {
        headers: { authorization: `Bearer ${state.token}` }, signal: controller.signal,
      });
      if (!response.ok) throw new Error(`${response.status}`);
      $("#live-state").classList.add("on");
      pause = 500;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          await onLiveEvent(block);
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    $("#live-state").classList.remove("on");
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 2, 10000);
  }
}

async function onLiveEvent(block) {
  const lines = block.split("\n");
  const type = (lines.find((l) => l.startsWith("event:")) || "").slice(6).trim();
  const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("");
  if (type === "reload") return loadMyOrders();
  if (type !== "order") return;
  const row = JSON.parse(data);
  // A stream starts with every order as it stands: those shown already need nothing.
  const shown = $("#my-orders").querySelector(`[data-order-id="${row.orderId}"]`);
  if (shown && shown.dataset.status === row.status) return;
  // The event carries the order; the timeline comes with the full view.
  const full = await api("GET", `/api/orders/${row.orderId}`).catch(() => row);
  upsertOrder(full);
}

// ---- seller ----------------------------------------------------------------------------

async function loadSeller() {
  const [awaiting, preparing, shipping, products] = await Promise.all([
    api("GET", "/api/seller/orders?status=AwaitingDeposit"),
    api("GET", "/api/seller/orders?status=Preparing"),
    api("GET", "/api/seller/orders?status=Shipping"),
    api("GET", "/api/products"),
  ]);
  const summary = (o) => element("div", {},
    element("b", {}, o.productName || "Product"), ` × ${o.quantity} · ${euros(o.amount)} · ${o.customerId}`,
    o.deposit ? element("div", { class: "muted" }, `Reference ${o.deposit.reference} · due ${when(o.deposit.dueAt)}`) : null);
  $("#awaiting").replaceChildren(...awaiting.map((o) =>
    element("li", { class: "awaiting", dataset: { orderId: o.orderId } },
      element("div", { class: "row" }, summary(o),
        button("Confirm deposit", "confirm", async () => {
          await api("POST", `/api/payments/${o.orderId}/deposit`);
          say(`Deposit ${o.deposit ? o.deposit.reference : ""} confirmed.`, true);
          await loadSeller();
        })))));
  $("#preparing").replaceChildren(...preparing.map((o) => element("li", { dataset: { orderId: o.orderId } }, summary(o))));
  $("#shipping").replaceChildren(...shipping.map((o) => element("li", { dataset: { orderId: o.orderId } }, summary(o))));
  $("#stock").replaceChildren(...products.map((p) => {
    const quantity = element("input", { type: "number", min: "1", value: "10", class: "qty", "aria-label": "units to add" });
    return element("li", { class: "stock", dataset: { productId: p.productId } },
      element("div", { class: "row" },
        element("div", {}, element("b", {}, p.name), element("div", { class: "muted" }, `${euros(p.price)} · ${p.stock} in stock`)),
        element("div", { class: "row" }, quantity, button("Add stock", "add-stock", async () => {
          await api("POST", `/api/products/${p.productId}/stock`, { quantity: Number(quantity.value), changeId: crypto.randomUUID() });
          say("Stock added.", true);
          await loadSeller();
        }))));
  }));
}

// ---- on call -----------------------------------------------------------------------------
// Every saga instance, its parked triggers (with a retry), and the orders stuck on a step the
// shop works itself; the retry is recorded by the saga with the seller as who asked.


// How a saga instance's or read model's follower stands: caught up since it started (or still
// catching up, and for how long without progress), and how many events it has not handed out.
function following(status) {
  const since = status.caughtUp ? "caught up" : `catching up (${status.followerLagS.toFixed(1)} s without progress)`;
  const behind = status.eventsBehind == null ? "events behind not counted yet" : `${status.eventsBehind} events behind`;
  return `${since} · ${behind}`;
}

async function loadOnCall() {
  const view = await api("GET", "/api/operator");
  const up = view.sagas.filter((s) => s.status);
  const breakers = [...new Set(up.flatMap((s) => s.status.breakersOpen).concat(view.gatewayBreakersOpen))];
  $("#on-call-summary").textContent =
    `${up.length} of ${view.sagas.length} saga instances answering · breakers open: ${breakers.length ? breakers.join(", ") : "none"} · as of ${when(view.at)}`;
  $("#sagas").replaceChildren(...view.sagas.map((s) => element("li", { class: "saga" },
    s.status
      ? element("div", {}, element("b", {}, s.url), ` · partitions ${s.status.partitions.join(", ") || "none"}`,
        element("div", { class: "muted" },
          `${following(s.status)}` +
          ` · ${s.status.unfinishedEvents} events in hand · ${s.status.depositTimers} deposit timers · ${s.status.parkedCount} parked` +
          ` · breakers open: ${s.status.breakersOpen.join(", ") || "none"}`))
      : element("div", {}, element("b", {}, s.url), ` · not answering: ${s.unreachable}`))));
  $("#read-models").replaceChildren(...view.readModels.map((r) => element("li", { class: "read-model" },
    element("b", {}, r.url), " · ",
    r.status
      ? `${following(r.status)}` +
        `${r.status.writing ? "" : " · its database refuses writes"} · applied up to ${r.status.applied ? r.status.applied.commit : "nothing yet"}`
      : `not answering: ${r.unreachable}`)));
  const parked = up.flatMap((s) => s.status.parked);
  $("#parked").replaceChildren(...parked.map((p) => element("li", { class: "parked", dataset: { orderId: p.orderId } },
    element("div", { class: "row" },
      element("div", {}, element("b", {}, p.trigger), ` · order ${p.orderId}`,
        element("div", { class: "muted" }, `${p.reason} · since ${when(p.since)} · ${p.attempts} tries · ${p.behind} waiting behind`)),
      button("Retry now", "retry", async () => {
        const retried = await api("POST", `/api/operator/orders/${p.orderId}/retry`);
        say(retried.stillParked ? `Still parked: ${retried.stillParked.reason}` : `${retried.trigger} went through.`, !retried.stillParked);
        await loadOnCall();
      })))));
  $("#stuck").replaceChildren(...view.stuck.map((o) => element("li", { class: "stuck", dataset: { orderId: o.orderId } },
    `Order ${o.orderId} · ${o.status} for ${o.forS} s`)));
}

async function register(event) {
  event.preventDefault();
  try {
    await api("POST", "/api/products", {
      name: $("#register-name").value, price: Number($("#register-price").value), stock: Number($("#register-stock").value || 0),
    });
    say("Product registered.", true);
    event.target.reset();
    await loadSeller();
  } catch (error) { say(error.message); }
}

$("#login-form").addEventListener("submit", login);
$("#register-form").addEventListener("submit", register);
$("#logout").addEventListener("click", logout);
// The seller's queues change as customers order and pay: refresh them every few seconds.
setInterval(() => {
  if (state.role === "seller" && state.token) {
    loadSeller().catch(() => {});
    loadOnCall().catch(() => {});
  }
}, 3000);
start();
