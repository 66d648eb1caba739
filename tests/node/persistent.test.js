// Persistent subscriptions of the embedded store through the official Node client: competing
// consumers pinned by correlation id, a poison event parked instead of blocking the others, and
// a group's checkpoint and parked events surviving a kill -9 of the store.
"use strict";

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { randomUUID } = require("node:crypto");
const {
  KurrentDBClient,
  jsonEvent,
  START,
  PARK,
  PINNED_BY_CORRELATION,
  persistentSubscriptionToStreamSettingsFromDefaults,
  PersistentSubscriptionExistsError,
} = require("@kurrent/kurrentdb-client");

const binary = process.env.MINIMALL_BIN || path.join(__dirname, "..", "..", "target", "debug", "minimall");
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "estore-node-persistent-"));
let server;
let client;

// Starts `minimall estore` on port 0 over `dataDir`; resolves with a client once it listens.
function startStore() {
  server = spawn(binary, ["estore", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const started = server;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("estore did not start within 20 s")), 20000);
    let seen = "";
    started.stdout.on("data", (chunk) => {
      seen += chunk.toString();
      const match = seen.match(/estore listening on (127\.0\.0\.1:\d+)/);
      if (match) {
        clearTimeout(timer);
        resolve(KurrentDBClient.connectionString`kurrentdb://${match[1]}?tls=false&discoveryInterval=0`);
      }
    });
    started.on("exit", (code) => reject(new Error(`estore exited with ${code}`)));
  });
}

async function killStore() {
  await client.dispose();
  const exited = new Promise((resolve) => server.once("exit", resolve));
  server.kill("SIGKILL");
  await exited;
}

before(async () => {
  client = await startStore();
});

after(async () => {
  if (client) await client.dispose();
  if (server) server.kill("SIGTERM");
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const unique = (prefix) => `${prefix}-${randomUUID().replaceAll("-", "")}`;
const settings = (changes) => persistentSubscriptionToStreamSettingsFromDefaults({ startFrom: START, ...changes });

// Bounded wait for a condition.
async function eventually(what, check) {
  const deadline = Date.now() + 10000;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

test("competing consumers pinned by correlation id: each correlation stays with one of them", async () => {
  const stream = unique("order");
  await client.createPersistentSubscriptionToStream(stream, "pinned", settings({ consumerStrategyName: PINNED_BY_CORRELATION }));
  await assert.rejects(
    client.createPersistentSubscriptionToStream(stream, "pinned", settings({})),
    PersistentSubscriptionExistsError,
  );
  const correlations = Array.from({ length: 6 }, () => randomUUID());
  for (let round = 0; round < 3; round++) {
    for (const correlation of correlations) {
      await client.appendToStream(stream, jsonEvent({ type: "OrderPlaced", data: { correlation, round }, metadata: { $correlationId: correlation } }));
    }
  }
  const owners = new Map();
  let received = 0;
  const consumers = [0, 1].map(() => client.subscribeToPersistentSubscriptionToStream(stream, "pinned", { bufferSize: 50 }));
  await Promise.race([
    Promise.all(consumers.map(async (subscription, index) => {
      for await (const resolved of subscription) {
        const { correlation } = resolved.event.data;
        if (!owners.has(correlation)) owners.set(correlation, index);
        assert.equal(owners.get(correlation), index, `correlation ${correlation} moved`);
        await subscription.ack(resolved);
        received += 1;
        if (received === 18) break;
      }
    })),
    eventually("18 events received", () => received === 18),
  ]);
  for (const subscription of consumers) await subscription.unsubscribe();
  assert.equal(owners.size, 6);
});

test("a poison event is parked, the next ones flow, and the group survives a kill -9 of the store", async () => {
  const stream = unique("payment");
  await client.createPersistentSubscriptionToStream(stream, "ledger", settings({ checkPointLowerBound: 1, checkPointAfter: 50, maxRetryCount: 1 }));
  for (let n = 0; n < 6; n++) await client.appendToStream(stream, jsonEvent({ type: "PayPlaced", data: { n } }));
  const subscription = client.subscribeToPersistentSubscriptionToStream(stream, "ledger", { bufferSize: 1 });
  const handled = [];
  for await (const resolved of subscription) {
    if (resolved.event.data.n === 0) {
      await subscription.nack(PARK, "poison", resolved);
      continue;
    }
    handled.push(resolved.event.data.n);
    await subscription.ack(resolved);
    if (handled.length === 3) break;
  }
  await subscription.unsubscribe();
  assert.deepEqual(handled, [1, 2, 3]);
  await eventually("checkpoint at revision 3 and one parked", async () => {
    const info = await client.getPersistentSubscriptionToStreamInfo(stream, "ledger");
    return info.stats.lastCheckpointedEventRevision === 3n && info.stats.parkedMessageCount === 1n;
  });

  await killStore();
  client = await startStore();

  const info = await client.getPersistentSubscriptionToStreamInfo(stream, "ledger");
  assert.equal(info.stats.parkedMessageCount, 1n);
  const resumed = client.subscribeToPersistentSubscriptionToStream(stream, "ledger", { bufferSize: 10 });
  const after = [];
  // (Leaving a for-await ends the subscription: one loop reads all three.)
  for await (const resolved of resumed) {
    after.push(resolved.event.data.n);
    await resumed.ack(resolved);
    if (after.length === 2) await client.replayParkedMessagesToStream(stream, "ledger");
    if (after.length === 3) break;
  }
  await resumed.unsubscribe();
  assert.deepEqual(after, [4, 5, 0], "resumes after its checkpoint, then the parked event replayed");
});
