#!/usr/bin/env python3
"""The sales ledger: revenue and refunds per day, kept from the shop's payment events.

What it owns: its own SQLite database (totals per UTC day, the amount each order paid, the
contract violations it met, and its checkpoint in $all). Nothing else.

What it must not do: write to the event store, or call any of the shop's services. It only
reads the log, through the official KurrentDB Python client, following the `payment-{orderId}`
streams in $all from its checkpoint (the commit position of the last event it handled).

Rules:
- every event it reads is validated against the language-neutral contract in contracts/:
  the data by `{eventType}.v{schemaVersion or 1}.schema.json`, the custom metadata by
  `metadata.schema.json`. An event that fails is reported on stderr and recorded as a
  violation, and is not counted; with --check the run exits non-zero when the database holds
  any violation. Nothing is skipped silently.
- revenue of a day (the UTC date of the data's `at`) is the sum of `PayChecked.amount`;
  refunds of a day are, for each `PayCanceled` with `refund: true`, the amount of that order's
  earlier `PayChecked`.
- the checkpoint is stored in the same SQLite transaction as the totals it changed, so a
  restart resumes where the last commit left off, without counting anything twice.

Usage:
  ledger.py [run] --store-url esdb://127.0.0.1:2113?tls=false --database ledger.sqlite
            [--contracts DIR] [--until-caught-up | --follow] [--check]
  ledger.py report --database ledger.sqlite [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sqlite3
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

SCHEMA_BASE = "https://minimall.shop/contracts/events/"
STREAM_FILTER = [r"payment-.*"]
PAGE_SIZE = 500
READ_TIMEOUT_S = 30.0
TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|z|[+-]\d{2}:\d{2})")
DEFAULT_CONTRACTS = Path(__file__).resolve().parents[2] / "contracts" / "events"

DDL = """
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    commit_position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS days (
    day TEXT PRIMARY KEY,
    revenue INTEGER NOT NULL DEFAULT 0,
    refunds INTEGER NOT NULL DEFAULT 0,
    payments INTEGER NOT NULL DEFAULT 0,
    refunded INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS paid (
    order_id TEXT PRIMARY KEY,
    amount INTEGER NOT NULL,
    refunded INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS violations (
    commit_position INTEGER NOT NULL,
    stream TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_id TEXT NOT NULL,
    message TEXT NOT NULL
);
"""


class ContractError(Exception):
    """An event does not match the contract (or the ledger's rules)."""


@dataclass
class Event:
    """What the ledger needs of one recorded event, independent of the client's types."""

    commit_position: int
    stream: str
    type: str
    id: str
    data: bytes
    metadata: bytes


# --- the contract --------------------------------------------------------------------------------


class Contract:
    """The event schemas of contracts/events, resolved offline through a referencing.Registry."""

    def __init__(self, directory: Path):
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource

        schemas = load_schemas(directory)
        resources = [(uri, Resource.from_contents(s)) for uri, s in schemas.items()]
        registry = Registry().with_resources(resources)
        self._validators = {}
        for uri, schema in schemas.items():
            Draft202012Validator.check_schema(schema)
            self._validators[uri] = Draft202012Validator(schema, registry=registry)

    def validate(self, name: str, instance: Any) -> None:
        validator = self._validators.get(SCHEMA_BASE + name)
        if validator is None:
            raise ContractError(f"no contract {name}")
        errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
        if errors:
            raise ContractError(f"{name}: " + "; ".join(describe(e) for e in errors))


def load_schemas(directory: Path) -> dict[str, dict]:
    schemas = {}
    for path in sorted(directory.glob("*.schema.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        uri = schema.get("$id")
        if uri != SCHEMA_BASE + path.name:
            raise SystemExit(f"ledger: {path} has $id {uri!r}, expected {SCHEMA_BASE + path.name}")
        schemas[uri] = schema
    if SCHEMA_BASE + "metadata.schema.json" not in schemas:
        raise SystemExit(f"ledger: no metadata.schema.json in {directory}")
    return schemas


def describe(error) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


def parse_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ContractError(f"{what} is not JSON: {e}") from None


def checked(event: Event, contract: Contract) -> dict:
    """The event's data after validating data and metadata; raises ContractError."""
    metadata = parse_json(event.metadata, "metadata")
    contract.validate("metadata.schema.json", metadata)
    data = parse_json(event.data, "data")
    version = data.get("schemaVersion", 1) if isinstance(data, dict) else 1
    if not isinstance(version, int) or isinstance(version, bool):
        raise ContractError(f"schemaVersion {version!r} is not an integer")
    contract.validate(f"{event.type}.v{version}.schema.json", data)
    if event.stream != f"payment-{data.get('orderId')}":
        raise ContractError(f"orderId {data.get('orderId')} on stream {event.stream}")
    return data


# --- the database --------------------------------------------------------------------------------


def open_database(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(DDL)
    return db


def stored_checkpoint(db: sqlite3.Connection) -> int | None:
    row = db.execute("SELECT commit_position FROM checkpoint WHERE id = 1").fetchone()
    return None if row is None else row[0]


def save_checkpoint(db: sqlite3.Connection, position: int) -> None:
    db.execute(
        "INSERT INTO checkpoint (id, commit_position) VALUES (1, ?) "
        "ON CONFLICT (id) DO UPDATE SET commit_position = excluded.commit_position",
        (position,),
    )


def add_to_day(db: sqlite3.Connection, day: str, *, revenue: int = 0, refunds: int = 0,
               payments: int = 0, refunded: int = 0) -> None:
    db.execute(
        "INSERT INTO days (day, revenue, refunds, payments, refunded) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (day) DO UPDATE SET revenue = revenue + excluded.revenue, "
        "refunds = refunds + excluded.refunds, payments = payments + excluded.payments, "
        "refunded = refunded + excluded.refunded",
        (day, revenue, refunds, payments, refunded),
    )


def record_violation(db: sqlite3.Connection, event: Event, message: str) -> None:
    print(
        f"ledger: contract violation at {event.commit_position} "
        f"({event.stream} {event.type} {event.id}): {message}",
        file=sys.stderr,
    )
    db.execute(
        "INSERT INTO violations VALUES (?, ?, ?, ?, ?)",
        (event.commit_position, event.stream, event.type, event.id, message),
    )


# --- the ledger's rules --------------------------------------------------------------------------


def utc_day(timestamp: str) -> str:
    """The UTC date of an RFC 3339 timestamp (the fraction, up to nanoseconds, does not matter)."""
    match = TIMESTAMP.fullmatch(timestamp)
    if match is None:
        raise ContractError(f"timestamp {timestamp!r} is not RFC 3339")
    seconds, zone = match.group(1), match.group(2)
    zone = "+00:00" if zone in ("Z", "z") else zone
    return datetime.fromisoformat(seconds + zone).astimezone(timezone.utc).date().isoformat()


def apply(db: sqlite3.Connection, event: Event, data: dict) -> None:
    if event.type == "PayChecked":
        apply_checked(db, data)
    elif event.type == "PayCanceled" and data["refund"]:
        apply_refund(db, event, data)


def apply_checked(db: sqlite3.Connection, data: dict) -> None:
    db.execute(
        "INSERT INTO paid (order_id, amount) VALUES (?, ?) "
        "ON CONFLICT (order_id) DO UPDATE SET amount = excluded.amount",
        (data["orderId"], data["amount"]),
    )
    add_to_day(db, utc_day(data["at"]), revenue=data["amount"], payments=1)


def apply_refund(db: sqlite3.Connection, event: Event, data: dict) -> None:
    row = db.execute(
        "SELECT amount, refunded FROM paid WHERE order_id = ?", (data["orderId"],)
    ).fetchone()
    if row is None:
        record_violation(db, event, "refund of an order with no earlier PayChecked")
    elif row[1]:
        record_violation(db, event, "second refund of the same order")
    else:
        db.execute("UPDATE paid SET refunded = 1 WHERE order_id = ?", (data["orderId"],))
        add_to_day(db, utc_day(data["at"]), refunds=row[0], refunded=1)


def handle(db: sqlite3.Connection, contract: Contract, event: Event) -> None:
    """One event: validate, apply or record the violation (inside the caller's transaction)."""
    db.execute("SAVEPOINT event")
    try:
        apply(db, event, checked(event, contract))
    except ContractError as e:
        db.execute("ROLLBACK TO event")
        record_violation(db, event, str(e))
    db.execute("RELEASE event")


def handle_batch(db: sqlite3.Connection, contract: Contract, events: list[Event]) -> None:
    """Events and the checkpoint after them, in one transaction."""
    if not events:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for event in events:
            handle(db, contract, event)
        save_checkpoint(db, events[-1].commit_position)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


# --- reading the log -----------------------------------------------------------------------------


def connect(store_url: str):
    from kurrentdbclient import KurrentDBClient

    return KurrentDBClient(uri=store_url)


def as_event(recorded) -> Event:
    return Event(
        commit_position=recorded.commit_position,
        stream=recorded.stream_name,
        type=recorded.type,
        id=str(recorded.id),
        data=recorded.data,
        metadata=recorded.metadata,
    )


def read_page(client, after: int | None) -> list[Event]:
    """Up to PAGE_SIZE payment events after the position (read_all's start is inclusive).

    The filter is always explicit: the client's default excludes system streams with a
    look-ahead regex, which the embedded store's regex engine refuses.
    """
    recorded = client.read_all(
        commit_position=after,
        filter_include=STREAM_FILTER,
        filter_by_stream_name=True,
        limit=PAGE_SIZE + 1,
        timeout=READ_TIMEOUT_S,
    )
    events = [as_event(r) for r in recorded]
    return [e for e in events if after is None or e.commit_position > after][:PAGE_SIZE]


def catch_up(client, db: sqlite3.Connection, contract: Contract) -> int:
    """Read from the checkpoint to the end of $all as it is now; the number of events read."""
    count = 0
    while True:
        events = read_page(client, stored_checkpoint(db))
        if not events:
            return count
        handle_batch(db, contract, events)
        count += len(events)


def follow(client, db: sqlite3.Connection, contract: Contract) -> None:
    """After catching up: a live subscription from the checkpoint, one transaction per event."""
    signal.signal(signal.SIGTERM, stop_following)
    subscription = client.subscribe_to_all(
        commit_position=stored_checkpoint(db),
        filter_include=STREAM_FILTER,
        filter_by_stream_name=True,
    )
    try:
        for recorded in subscription:
            handle_batch(db, contract, [as_event(recorded)])
    except StopFollowing:
        print(f"ledger: stopped at {stored_checkpoint(db)}", file=sys.stderr)
    finally:
        subscription.stop()


class StopFollowing(Exception):
    """SIGTERM while following: the current transaction rolls back, the run ends cleanly."""


def stop_following(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one must not cut the cleanup
    raise StopFollowing()


# --- the report ----------------------------------------------------------------------------------


def report(db: sqlite3.Connection) -> dict:
    days = {
        day: {"revenue": rev, "refunds": ref, "payments": n, "refunded": m}
        for day, rev, ref, n, m in db.execute(
            "SELECT day, revenue, refunds, payments, refunded FROM days ORDER BY day"
        )
    }
    violations = [
        {"commitPosition": p, "stream": s, "eventType": t, "eventId": i, "message": m}
        for p, s, t, i, m in db.execute("SELECT * FROM violations ORDER BY commit_position")
    ]
    return {
        "checkpoint": stored_checkpoint(db),
        "days": days,
        "totals": {
            "revenue": sum(d["revenue"] for d in days.values()),
            "refunds": sum(d["refunds"] for d in days.values()),
            "payments": sum(d["payments"] for d in days.values()),
            "refunded": sum(d["refunded"] for d in days.values()),
        },
        "violations": violations,
    }


# --- the command line ----------------------------------------------------------------------------


def parse_args(argv: Iterable[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="The sales ledger: revenue and refunds per day.")
    p.add_argument("command", nargs="?", choices=["run", "report"], default="run")
    p.add_argument("--store-url", help="the event store, e.g. esdb://127.0.0.1:2113?tls=false")
    p.add_argument("--database", required=True, help="the ledger's SQLite file")
    p.add_argument("--contracts", type=Path, default=DEFAULT_CONTRACTS,
                   help="the directory of event schemas (default: the repository's)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--until-caught-up", action="store_true",
                      help="stop at the end of the log (the default)")
    mode.add_argument("--follow", action="store_true",
                      help="after catching up, keep following with a live subscription")
    p.add_argument("--check", action="store_true",
                   help="exit 3 when the database holds any contract violation")
    args = p.parse_args(list(argv))
    if args.command == "run" and not args.store_url:
        p.error("run needs --store-url")
    return args


def run(args: argparse.Namespace, db: sqlite3.Connection) -> None:
    contract = Contract(args.contracts)
    client = connect(args.store_url)
    try:
        count = catch_up(client, db, contract)
        where = stored_checkpoint(db)
        print(f"ledger: caught up at {'the start' if where is None else where} "
              f"({count} new events)", file=sys.stderr)
        if args.follow:
            follow(client, db, contract)
    finally:
        client.close()


def main(argv: Iterable[str]) -> int:
    args = parse_args(argv)
    db = open_database(args.database)
    try:
        if args.command == "run":
            run(args, db)
        result = report(db)
    finally:
        db.close()
    if args.command == "report":
        print(json.dumps(result, indent=2))
    if args.check and result["violations"]:
        print(f"ledger: {len(result['violations'])} contract violation(s)", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
