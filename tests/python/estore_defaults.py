"""The embedded event store driven by the official Python client (kurrentdbclient) as most
programs use it: with its defaults. `read_all()` and `subscribe_to_all()` with no arguments send
the client's default exclude filter (a regular expression with look-ahead, evaluated as KurrentDB
does), so system events (`$metadata`, `$streamDeleted`) stay out and the program's own come in;
append, read, stream metadata, delete and tombstone answer as a KurrentDB node answers.

Run: .venv/bin/python tests/python/estore_defaults.py --binary target/debug/minimall
Starts `minimall estore` on 127.0.0.1 port 0 with a temporary data dir; stops it at the end.
Every wait is bounded.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import unittest
import uuid

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import (
    FailedPreconditionError,
    NotFoundError,
    StreamIsDeletedError,
    WrongCurrentVersionError,
)

# Seconds any one call or wait may take.
WAIT_S = 20
BINARY = "target/debug/minimall"


def start_store(data_dir):
    """`minimall estore` on port 0; returns the process and the address it printed."""
    process = subprocess.Popen(
        [BINARY, "estore", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        text=True,
    )
    found = {}

    def watch():
        for line in process.stdout:
            match = re.search(r"estore listening on (127\.0\.0\.1:\d+)", line)
            if match:
                found["address"] = match.group(1)
                return

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    reader.join(WAIT_S)
    if "address" not in found:
        stop(process)
        raise RuntimeError(f"estore did not say where it listens within {WAIT_S} s")
    return process, found["address"]


def stop(process):
    process.terminate()
    try:
        process.wait(WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()


def event(event_type, n):
    return NewEvent(type=event_type, data=json.dumps({"n": n}).encode())


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex}"


class Defaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data_dir = tempfile.TemporaryDirectory(prefix="estore-python-")
        cls.addClassCleanup(cls.data_dir.cleanup)
        cls.process, address = start_store(cls.data_dir.name)
        cls.addClassCleanup(stop, cls.process)
        # defaultDeadline (seconds) bounds every call of the client.
        cls.client = KurrentDBClient(uri=f"kurrentdb://{address}?tls=false&defaultDeadline={WAIT_S}")
        cls.addClassCleanup(cls.client.close)

    def test_append_and_read_back(self):
        stream = unique("order")
        first = self.client.append_to_stream(
            stream, events=[event("OrderPlaced", 0), event("OrderShipped", 1)],
            current_version=StreamState.NO_STREAM,
        )
        self.assertGreater(first, 0, "the commit position of the append")
        recorded = self.client.get_stream(stream)
        self.assertEqual([e.type for e in recorded], ["OrderPlaced", "OrderShipped"])
        self.assertEqual(self.client.get_current_version(stream), 1)
        with self.assertRaises(WrongCurrentVersionError):
            self.client.append_to_stream(
                stream, events=event("OrderPlaced", 2), current_version=StreamState.NO_STREAM
            )

    def test_read_all_with_no_arguments_leaves_system_events_out(self):
        deleted = unique("order")
        self.client.append_to_stream(deleted, events=event("OrderPlaced", 0), current_version=StreamState.NO_STREAM)
        self.client.delete_stream(deleted, current_version=0)
        gone = unique("order")
        self.client.append_to_stream(gone, events=event("OrderPlaced", 0), current_version=StreamState.NO_STREAM)
        self.client.tombstone_stream(gone, current_version=0)
        mine = unique("order")
        self.client.append_to_stream(mine, events=event("OrderPlaced", 7), current_version=StreamState.NO_STREAM)

        seen = list(self.client.read_all())
        types = {e.type for e in seen}
        self.assertNotIn("$metadata", types)
        self.assertNotIn("$streamDeleted", types)
        self.assertIn(mine, [e.stream_name for e in seen])
        # Unfiltered, the system events are there, as on a node.
        everything = list(self.client.read_all(filter_exclude=()))
        self.assertIn(("$$" + deleted, "$metadata"), [(e.stream_name, e.type) for e in everything])
        self.assertIn((gone, "$streamDeleted"), [(e.stream_name, e.type) for e in everything])

    def test_subscribe_to_all_with_no_arguments_gets_history_then_live_events(self):
        before = unique("order")
        self.client.append_to_stream(before, events=event("OrderPlaced", 1), current_version=StreamState.NO_STREAM)
        subscription = self.client.subscribe_to_all(timeout=WAIT_S)
        try:
            self.wait_for(subscription, before)
            after = unique("order")
            self.client.append_to_stream(after, events=event("OrderPlaced", 2), current_version=StreamState.NO_STREAM)
            self.client.set_stream_metadata(after, metadata={"$maxCount": 5})
            received = self.wait_for(subscription, after)
            self.assertEqual(json.loads(received.data), {"n": 2})
        finally:
            subscription.stop()

    def wait_for(self, subscription, stream):
        for recorded in subscription:
            self.assertFalse(recorded.type.startswith("$"), f"a system event came through: {recorded.type}")
            if recorded.stream_name == stream:
                return recorded
        self.fail(f"the subscription ended before {stream}")

    def test_stream_metadata_round_trips_and_is_honoured(self):
        stream = unique("order")
        self.assertEqual(self.client.get_stream_metadata(stream), ({}, StreamState.NO_STREAM))
        self.client.append_to_stream(
            stream, events=[event("OrderPlaced", n) for n in range(5)], current_version=StreamState.NO_STREAM
        )
        self.client.set_stream_metadata(stream, metadata={"$maxCount": 2, "owner": "shop"},
                                        current_version=StreamState.NO_STREAM)
        metadata, version = self.client.get_stream_metadata(stream)
        self.assertEqual((metadata, version), ({"$maxCount": 2, "owner": "shop"}, 0))
        self.assertEqual([json.loads(e.data)["n"] for e in self.client.get_stream(stream)], [3, 4])
        with self.assertRaises(WrongCurrentVersionError):
            self.client.set_stream_metadata(stream, metadata={}, current_version=StreamState.NO_STREAM)

    def test_delete_and_tombstone(self):
        stream = unique("order")
        self.client.append_to_stream(
            stream, events=[event("OrderPlaced", 0), event("OrderPlaced", 1)], current_version=StreamState.NO_STREAM
        )
        with self.assertRaises(WrongCurrentVersionError):
            self.client.delete_stream(stream, current_version=5)
        self.client.delete_stream(stream, current_version=1)
        with self.assertRaises(NotFoundError):
            self.client.get_stream(stream)
        metadata, _ = self.client.get_stream_metadata(stream)
        self.assertEqual(metadata, {"$tb": 2**63 - 1})
        self.client.append_to_stream(stream, events=event("OrderPlaced", 2), current_version=StreamState.NO_STREAM)
        self.assertEqual([e.stream_position for e in self.client.get_stream(stream)], [2])

        self.client.tombstone_stream(stream, current_version=StreamState.ANY)
        with self.assertRaises(StreamIsDeletedError):
            self.client.get_stream(stream)
        # The client reads a node's stream-deleted answer to an append as a failed precondition.
        with self.assertRaisesRegex(FailedPreconditionError, "is deleted"):
            self.client.append_to_stream(stream, events=event("OrderPlaced", 3), current_version=StreamState.ANY)

        # A node answers a wrong expected version with actual version -1, which the client
        # reports as not found.
        never = unique("order")
        for delete in (self.client.delete_stream, self.client.tombstone_stream):
            with self.assertRaises(NotFoundError):
                delete(never, current_version=StreamState.ANY)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=BINARY)
    arguments, rest = parser.parse_known_args()
    BINARY = arguments.binary
    unittest.main(argv=[sys.argv[0], "-v", *rest])
