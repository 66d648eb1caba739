// The embedded event store driven by the official Node client (@kurrent/kurrentdb-client): a
// second, non-Rust client proving protocol compatibility. It appends through BatchAppend (what
// the Node client uses when the server advertises it) and through plain Append (used with
// per-call credentials), reads streams and $all, and subscribes to $all with a server-side filter.
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
  NO_STREAM,
  ANY,
  START,
  END,
  FORWARDS,
  BACKWARDS,
  streamNameFilter,
  eventTypeFilter,
  WrongExpectedVersionError,
  StreamNotFoundError,
  StreamDeletedError,
} = require("@kurrent/kurrentdb-client");

const binary = process.env.MINIMALL_BIN || path.join(__dirname, "..", "..", "target", "debug", "minimall");
let server;
let dataDir;
let client;

// Starts `minimall estore` on port 0 and waits for the line that carries the bound address.
function startStore() {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "estore-node-"));
  server = spawn(binary, ["estore", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("estore did not start within 20 s")), 20000);
    let seen = "";
    server.stdout.on("data", (chunk) => {
      seen += chunk.toString();
      const match = seen.match(/estore listening on (127\.0\.0\.1:\d+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    server.on("exit", (code) => reject(new Error(`estore exited with ${code}`)));
  });
}

before(async () => {
  const address = await startStore();
  client = KurrentDBClient.connectionString`kurrentdb://${address}?tls=false&discoveryInterval=0`;
});

after(async () => {
  if (client) await client.dispose();
  if (server) server.kill("SIGTERM");
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

const unique = (prefix) => `${prefix}-${randomUUID().replaceAll("-", "")}`;
const orderEvent = (type, n) => jsonEvent({ type, data: { orderId: `order-${n}`, n } });

async function collect(iterable) {
  const out = [];
  for await (const resolved of iterable) out.push(resolved.event);
  return out;
}

test("a single event appended (BatchAppend) and read back", async () => {
  const stream = unique("order");
  const result = await client.appendToStream(stream, orderEvent("OrderPlaced", 1), { streamState: NO_STREAM });
  assert.equal(result.success, true);
  assert.equal(result.nextExpectedRevision, 0n);
  const events = await collect(client.readStream(stream, { fromRevision: START, direction: FORWARDS }));
  assert.equal(events.length, 1);
  assert.equal(events[0].type, "OrderPlaced");
  assert.equal(events[0].streamId, stream);
  assert.deepEqual(events[0].data, { orderId: "order-1", n: 1 });
  assert.ok(events[0].created instanceof Date && Math.abs(events[0].created - Date.now()) < 60000);
});

test("a batch of events appended in one call, read forwards and backwards", async () => {
  const stream = unique("payment");
  const events = Array.from({ length: 100 }, (_, n) => orderEvent("PayPlaced", n));
  const result = await client.appendToStream(stream, events, { streamState: NO_STREAM });
  assert.equal(result.nextExpectedRevision, 99n);
  const forwards = await collect(client.readStream(stream, { fromRevision: START, direction: FORWARDS }));
  assert.deepEqual(forwards.map((e) => e.data.n), Array.from({ length: 100 }, (_, n) => n));
  const backwards = await collect(client.readStream(stream, { fromRevision: END, direction: BACKWARDS, maxCount: 3 }));
  assert.deepEqual(backwards.map((e) => e.data.n), [99, 98, 97]);
});

test("plain Append (per-call credentials) and a wrong expected revision", async () => {
  const stream = unique("product");
  const credentials = { username: "admin", password: "changeit" };
  const first = await client.appendToStream(stream, orderEvent("ProductRegistered", 0), { streamState: NO_STREAM, credentials });
  assert.equal(first.nextExpectedRevision, 0n);
  await assert.rejects(
    client.appendToStream(stream, orderEvent("StockAdded", 1), { streamState: 5n, credentials }),
    WrongExpectedVersionError,
  );
  await assert.rejects(
    client.appendToStream(stream, orderEvent("StockAdded", 1), { streamState: NO_STREAM }),
    WrongExpectedVersionError,
  );
  const second = await client.appendToStream(stream, orderEvent("StockAdded", 1), { streamState: 0n });
  assert.equal(second.nextExpectedRevision, 1n);
});

test("a delete or tombstone with a wrong expected revision is refused", async () => {
  const stream = unique("keep");
  await client.appendToStream(stream, orderEvent("OrderPlaced", 0), { streamState: NO_STREAM });
  await assert.rejects(client.deleteStream(stream, { expectedRevision: 7n }), WrongExpectedVersionError);
  await assert.rejects(client.tombstoneStream(stream, { expectedRevision: NO_STREAM }), WrongExpectedVersionError);
  const events = await collect(client.readStream(stream));
  assert.equal(events.length, 1);
  await client.deleteStream(stream, { expectedRevision: 0n });
  await assert.rejects(collect(client.readStream(stream)), StreamNotFoundError);
});

test("a stream that never existed cannot be deleted or tombstoned, as on a KurrentDB node", async () => {
  const never = unique("never");
  for (const refuse of [() => client.deleteStream(never), () => client.tombstoneStream(never)]) {
    await assert.rejects(refuse(), (e) => {
      assert.ok(e instanceof WrongExpectedVersionError, String(e));
      // The client reads the node's actual-version -1 as -1n.
      assert.ok([-1n, "no_stream"].includes(e.actualState), `actual ${e.actualState}`);
      return true;
    });
  }
  await client.appendToStream(never, orderEvent("OrderPlaced", 0), { streamState: NO_STREAM });
});

test("stream metadata: set and read at an expected revision, $maxCount and $tb honoured", async () => {
  const stream = unique("meta");
  const events = Array.from({ length: 6 }, (_, n) => orderEvent("OrderPlaced", n));
  await client.appendToStream(stream, events, { streamState: NO_STREAM });
  const none = await client.getStreamMetadata(stream);
  assert.equal(none.metadata, undefined);
  await client.setStreamMetadata(stream, { maxCount: 3, owner: "shop" }, { streamState: NO_STREAM });
  await assert.rejects(
    client.setStreamMetadata(stream, { maxCount: 1 }, { streamState: NO_STREAM }),
    WrongExpectedVersionError,
  );
  const read = await client.getStreamMetadata(stream);
  assert.equal(read.metadata.maxCount, 3);
  assert.equal(read.metadata.owner, "shop");
  let shown = await collect(client.readStream(stream));
  assert.deepEqual(shown.map((e) => e.data.n), [3, 4, 5]);
  await client.setStreamMetadata(stream, { truncateBefore: 5 }, { streamState: 0n });
  shown = await collect(client.readStream(stream, { fromRevision: END, direction: BACKWARDS }));
  assert.deepEqual(shown.map((e) => e.data.n), [5]);
});

test("a soft-deleted stream, as on a node: deleted again, written again, its old events hidden", async () => {
  const stream = unique("soft");
  await client.appendToStream(stream, [orderEvent("OrderPlaced", 0), orderEvent("OrderPlaced", 1)]);
  const deleted = await client.deleteStream(stream);
  assert.ok(deleted.position && deleted.position.commit > 0n);
  await client.deleteStream(stream, { expectedRevision: NO_STREAM });
  await client.deleteStream(stream, { expectedRevision: 1n });
  await assert.rejects(client.deleteStream(stream, { expectedRevision: 4n }), (e) => {
    assert.ok(e instanceof WrongExpectedVersionError, String(e));
    assert.equal(e.actualState, 1n);
    return true;
  });
  const meta = await client.getStreamMetadata(stream);
  // JSON numbers read as doubles in JavaScript: i64::MAX reads as 2^63.
  assert.equal(meta.metadata.truncateBefore, 2 ** 63);
  const again = await client.appendToStream(stream, orderEvent("OrderPlaced", 2), { streamState: NO_STREAM });
  assert.equal(again.nextExpectedRevision, 2n);
  const shown = await collect(client.readStream(stream));
  assert.deepEqual(shown.map((e) => e.data.n), [2]);
  assert.equal((await client.getStreamMetadata(stream)).metadata.truncateBefore, 2);
});

test("a tombstone is a $streamDeleted record in $all, and its metadata reads as deleted", async () => {
  const stream = unique("tomb");
  await client.appendToStream(stream, orderEvent("OrderPlaced", 0));
  const { position } = await client.tombstoneStream(stream);
  const [record] = await collect(client.readAll({ fromPosition: position, direction: FORWARDS, maxCount: 1 }));
  assert.equal(record.type, "$streamDeleted");
  assert.equal(record.streamId, stream);
  assert.equal(record.revision, 9223372036854775807n);
  await assert.rejects(client.getStreamMetadata(stream), StreamDeletedError);
  for (const expectedRevision of [ANY, NO_STREAM, 0n]) {
    await assert.rejects(client.deleteStream(stream, { expectedRevision }), StreamDeletedError);
  }
});

test("a category followed through $ce- with links resolved, as Emmett's consumers do", async () => {
  const category = `cat${randomUUID().replaceAll("-", "")}`;
  await client.appendToStream(`${category}-1`, orderEvent("OrderPlaced", 1));
  const subscription = client.subscribeToStream(`$ce-${category}`, { fromRevision: START, resolveLinkTos: true });
  const seen = [];
  for await (const resolved of subscription) {
    assert.equal(resolved.link.type, "$>");
    seen.push([resolved.event.streamId, resolved.event.data.n]);
    if (seen.length === 1) await client.appendToStream(`${category}-2`, orderEvent("OrderPlaced", 2));
    if (seen.length === 2) break;
  }
  await subscription.unsubscribe();
  assert.deepEqual(seen, [[`${category}-1`, 1], [`${category}-2`, 2]]);
  const byType = await collect(client.readStream("$et-OrderPlaced", { fromRevision: END, direction: BACKWARDS, maxCount: 1, resolveLinkTos: true }));
  assert.equal(byType[0].streamId, `${category}-2`);
});

test("reading a missing stream and a tombstoned one", async () => {
  await assert.rejects(collect(client.readStream(unique("nothing"))), StreamNotFoundError);
  const stream = unique("gone");
  await client.appendToStream(stream, orderEvent("OrderPlaced", 0));
  await client.tombstoneStream(stream);
  await assert.rejects(collect(client.readStream(stream)), StreamDeletedError);
  await assert.rejects(client.appendToStream(stream, orderEvent("OrderPlaced", 1), { streamState: ANY }), StreamDeletedError);
});

test("$all read and a filtered $all subscription with checkpoints", async () => {
  const tag = randomUUID().replaceAll("-", "");
  const prefix = `delivery${tag}`;
  for (let n = 0; n < 5; n++) {
    await client.appendToStream(`${prefix}-${n}`, orderEvent("DeliveryStarted", n));
    await client.appendToStream(`other${tag}-${n}`, orderEvent("Noise", 100 + n));
  }
  const all = await collect(client.readAll({ fromPosition: START, direction: FORWARDS }));
  assert.equal(all.filter((e) => e.streamId.startsWith(prefix)).length, 5);

  const checkpoints = [];
  const subscription = client.subscribeToAll({
    fromPosition: START,
    filter: streamNameFilter({
      prefixes: [prefix],
      maxSearchWindow: 2,
      checkpointInterval: 1,
      checkpointReached: (_sub, position) => { checkpoints.push(position); },
    }),
  });
  const seen = [];
  let appendedLive = false;
  for await (const resolved of subscription) {
    seen.push(resolved.event.data.n);
    if (seen.length === 5 && !appendedLive) {
      appendedLive = true;
      await client.appendToStream(`${prefix}-live`, orderEvent("DeliveryStarted", 5));
    }
    if (seen.length === 6) break;
  }
  await subscription.unsubscribe();
  assert.deepEqual(seen, [0, 1, 2, 3, 4, 5]);
  assert.ok(checkpoints.length >= 3, `checkpoints: ${checkpoints.length}`);

  const byType = client.subscribeToAll({ fromPosition: START, filter: eventTypeFilter({ regex: "^Noise$" }) });
  const noise = [];
  for await (const resolved of byType) {
    if (resolved.event.streamId.startsWith(`other${tag}`)) noise.push(resolved.event.data.n);
    if (noise.length === 5) break;
  }
  await byType.unsubscribe();
  assert.deepEqual(noise, [100, 101, 102, 103, 104]);
});
