// The web UI end to end in a real headless Chromium (Debian's, driven by playwright-core): a
// customer orders and sees AwaitingDeposit; the seller confirms the deposit; the customer's page
// shows Shipping without a reload; the customer confirms receipt and sees Closed. Screenshots
// are saved as test artifacts (tests/node/artifacts/).
"use strict";

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { chromium } = require("playwright-core");

const binary = process.env.MINIMALL_BIN || path.join(__dirname, "..", "..", "target", "debug", "minimall");
const browserPath = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const artifacts = path.join(__dirname, "artifacts");
// Longest wait for the shop to start or a status to show, in milliseconds.
const WAIT_MS_MAX = 30000;

let shop;
let gateway;
let browser;

// Starts `minimall up --any-port` in a fresh directory and waits for the gateway's address.
function startShop() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "minimall-ui-"));
  shop = spawn(binary, ["up", "--any-port", "--data-dir", dataDir], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the shop did not start in time")), WAIT_MS_MAX);
    let seen = "";
    shop.stdout.on("data", (chunk) => {
      seen += chunk.toString();
      const match = seen.match(/gateway\s+(http:\/\/127\.0\.0\.1:\d+)/);
      if (match && seen.includes("Ctrl-C stops it.")) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    shop.on("exit", (code) => reject(new Error(`the shop exited with ${code}`)));
  });
}

before(async () => {
  gateway = await startShop();
  browser = await chromium.launch({ executablePath: browserPath, args: ["--no-sandbox"] });
  fs.mkdirSync(artifacts, { recursive: true });
});

after(async () => {
  if (browser) await browser.close();
  if (shop) shop.kill("SIGINT");
});

// A phone-sized page logged in as `name`.
async function loggedIn(name) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  await page.goto(gateway);
  await page.fill("#login-name", name);
  await page.fill("#login-password", name);
  await page.click("#login-submit");
  await page.waitForSelector(`#who-name:has-text("${name}")`);
  return page;
}

test("a customer orders, the seller confirms, the customer sees it ship and closes it", { timeout: 120000 }, async () => {
  const customer = await loggedIn("alice");
  await customer.waitForSelector(".product");
  await customer.locator(".product", { hasText: "Sencha green tea" }).locator("button.order").click();
  const card = customer.locator(".order-card").first();
  await card.locator('.status[data-status="AwaitingDeposit"]').waitFor({ timeout: WAIT_MS_MAX });
  const reference = (await card.locator(".reference").textContent()).trim();
  assert.match(reference, /^MM-[0-9A-F]{12}$/);
  const orderId = await card.getAttribute("data-order-id");
  await customer.screenshot({ path: path.join(artifacts, "1-customer-awaiting-deposit.png"), fullPage: true });

  const seller = await loggedIn("seller");
  const awaiting = seller.locator(`.awaiting[data-order-id="${orderId}"]`);
  await awaiting.waitFor({ timeout: WAIT_MS_MAX });
  assert.match(await awaiting.textContent(), new RegExp(reference));
  await awaiting.locator("button.confirm").click();
  await seller.waitForSelector(`#message.ok`);
  await seller.screenshot({ path: path.join(artifacts, "2-seller-confirmed.png"), fullPage: true });
  // The seller's on-call view: the saga instance answers, holding every partition of the orders.
  const saga = seller.locator("#sagas li.saga");
  await saga.first().waitFor({ timeout: WAIT_MS_MAX });
  assert.match(await saga.first().textContent(), /partitions 0, 1, 2/);
  assert.match(await seller.locator("#on-call-summary").textContent(), /1 of 1 saga instances answering/);
  assert.match(await seller.locator("#read-models li.read-model").first().textContent(), /caught up · (\d+ events behind|events behind not counted yet)/);

  // No reload: the customer's page follows the live stream.
  const mine = customer.locator(`.order-card[data-order-id="${orderId}"]`);
  await mine.locator('.status[data-status="Shipping"]').waitFor({ timeout: WAIT_MS_MAX });
  await customer.screenshot({ path: path.join(artifacts, "3-customer-shipping.png"), fullPage: true });
  await mine.locator("button.receipt").click();
  await customer
    .locator(`.order-card[data-order-id="${orderId}"] .status[data-status="Closed"]`)
    .waitFor({ timeout: WAIT_MS_MAX });
  const history = await customer.locator(`.order-card[data-order-id="${orderId}"] ol.timeline`).textContent();
  for (const step of ["OrderPlaced", "PayPlaced", "PayChecked", "QtyDecreased", "DeliveryStarted", "OrderClosed"]) {
    assert.ok(history.includes(step), `${step} in the history: ${history}`);
  }
  await customer.screenshot({ path: path.join(artifacts, "4-customer-closed.png"), fullPage: true });
});

test("a customer cancels while the deposit is awaited", { timeout: 60000 }, async () => {
  const customer = await loggedIn("bob");
  await customer.waitForSelector(".product");
  await customer.locator(".product", { hasText: "Stoneware tea cup" }).locator("button.order").click();
  const card = customer.locator(".order-card").first();
  await card.locator('.status[data-status="AwaitingDeposit"]').waitFor({ timeout: WAIT_MS_MAX });
  await card.locator("button.cancel").click();
  await customer.locator('.order-card .status[data-status="Cancelled"]').first().waitFor({ timeout: WAIT_MS_MAX });
  // Bob sees only his own orders.
  const owners = await customer.locator(".order-card").count();
  assert.equal(owners, 1);
});
