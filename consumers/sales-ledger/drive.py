#!/usr/bin/env python3
"""Drives a small workload through the shop's gateway and tells what the ledger should say.

For scripts/test-ledger only; the standard library alone (urllib), so it needs no install.
It talks to the gateway it is given, which must be on 127.0.0.1, and paces its requests under
the gateway's rate limit (50 requests/s per client). Every wait is bounded.

  drive.py place    --gateway URL --state FILE   a product with stock 3; 12 orders by alice and
                                                 bob on it and on a demo product, each waited
                                                 to AwaitingDeposit; two of them cancelled
  drive.py settle   --gateway URL --state FILE   the seller confirms the other deposits (more
                                                 than the stock: some go OutOfStock, refunded),
                                                 two shipped orders are received; waits until
                                                 every order is settled
  drive.py expected --gateway URL --state FILE   the totals per UTC day from the read model
  drive.py compare  EXPECTED LEDGER_REPORT       exits 1 on any difference
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone

STATUSES = ["OrderPlaced", "AwaitingDeposit", "DepositConfirmed", "Preparing", "Shipping",
            "Closed", "Cancelled"]
PACE_S = 0.03
REQUEST_TIMEOUT_S = 10
WAIT_S = 45
SMALL_STOCK = 3
ORDERS_ON_SMALL = 7
ORDERS_ON_DEMO = 5
TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|z|[+-]\d{2}:\d{2})")


class Failure(Exception):
    pass


# --- HTTP ----------------------------------------------------------------------------------------


class Gateway:
    def __init__(self, base: str):
        if urllib.parse.urlsplit(base).hostname != "127.0.0.1":
            raise Failure(f"refusing to talk to {base}: only 127.0.0.1")
        self.base = base.rstrip("/")
        self.tokens: dict[str, str] = {}

    def call(self, method: str, path: str, who: str | None = None, body=None,
             expect=(200, 201)):
        deadline = time.monotonic() + WAIT_S
        while True:
            status, payload, retry_after = self._once(method, path, who, body)
            if status in (429, 503) and retry_after is not None and time.monotonic() < deadline:
                time.sleep(min(retry_after, 2.0))
                continue
            if status not in expect:
                raise Failure(f"{method} {path} as {who}: {status} {payload}")
            return payload

    def _once(self, method, path, who, body):
        time.sleep(PACE_S)
        headers = {"content-type": "application/json"}
        if who is not None:
            headers["authorization"] = f"Bearer {self.token(who)}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                return response.status, decode(response.read()), None
        except urllib.error.HTTPError as e:
            retry = e.headers.get("retry-after")
            return e.code, decode(e.read()), float(retry) if retry else None

    def token(self, name: str) -> str:
        if name not in self.tokens:
            answer = self.call("POST", "/api/login", body={"name": name, "password": name})
            self.tokens[name] = answer["token"]
        return self.tokens[name]

    def order(self, order_id: str, who: str, at_least: int | None = None) -> dict:
        query = "" if at_least is None else f"?atLeast={at_least}"
        return self.call("GET", f"/api/orders/{order_id}{query}", who)


def decode(raw: bytes):
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def wait_until(gateway: Gateway, order: dict, done, what: str) -> dict:
    """Polls the order's view (as its customer) until done(view); bounded by WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while True:
        view = gateway.order(order["orderId"], order["customer"], order.get("position"))
        if done(view):
            return view
        if time.monotonic() > deadline:
            raise Failure(f"order {order['orderId']} not {what} after {WAIT_S}s: "
                          f"{view['status']} {view.get('deposit')}")
        time.sleep(0.2)


def settled(view: dict) -> bool:
    if view["status"] in ("Shipping", "Closed"):
        return True
    return view["status"] == "Cancelled" and bool((view.get("deposit") or {}).get("cancelled"))


# --- the workload --------------------------------------------------------------------------------


def place(gateway: Gateway) -> dict:
    demo = gateway.call("GET", "/api/products")[0]
    product = gateway.call("POST", "/api/products", "seller", {
        "name": f"Ledger test kettle {int(time.time())}", "price": 2300, "stock": SMALL_STOCK})
    products = [product["productId"]] * ORDERS_ON_SMALL + [demo["productId"]] * ORDERS_ON_DEMO
    orders = [place_one(gateway, p, ["alice", "bob"][i % 2]) for i, p in enumerate(products)]
    for order in orders:
        wait_until(gateway, order, lambda v: v["status"] == "AwaitingDeposit", "AwaitingDeposit")
    for order in (orders[0], orders[-1]):
        cancel(gateway, order)
    return {"smallProduct": product["productId"], "demoProduct": demo["productId"],
            "orders": orders}


def place_one(gateway: Gateway, product_id: str, customer: str) -> dict:
    answer = gateway.call("POST", "/api/orders", customer,
                          {"productId": product_id, "quantity": 1}, expect=(201,))
    return {"orderId": answer["orderId"], "customer": customer, "productId": product_id,
            "position": answer["position"], "plan": "confirm"}


def cancel(gateway: Gateway, order: dict) -> None:
    answer = gateway.call("POST", f"/api/orders/{order['orderId']}/cancel", order["customer"])
    order["plan"] = "cancel"
    order["position"] = answer.get("position", order["position"])
    wait_until(gateway, order, settled, "cancelled")


def settle(gateway: Gateway, state: dict) -> None:
    confirmed = [o for o in state["orders"] if o["plan"] == "confirm"]
    for order in confirmed:
        answer = gateway.call("POST", f"/api/payments/{order['orderId']}/deposit", "seller")
        order["position"] = answer.get("position", order["position"])
    views = [wait_until(gateway, o, settled, "settled") for o in confirmed]
    shipping = [o for o, v in zip(confirmed, views) if v["status"] == "Shipping"][:2]
    for order in shipping:
        answer = gateway.call("POST", f"/api/orders/{order['orderId']}/receipt",
                              order["customer"])
        order["plan"] = "receive"
        order["position"] = answer.get("position", order["position"])
        wait_until(gateway, order, lambda v: v["status"] == "Closed", "Closed")
    outcome = {}
    for view in views:
        key = view["status"] + (f"/{view['cancelReason']}" if view.get("cancelReason") else "")
        outcome[key] = outcome.get(key, 0) + 1
    print(f"drive: confirmed {len(confirmed)}: {outcome}; received {len(shipping)}",
          file=sys.stderr)
    if not any(v.get("cancelReason") == "OutOfStock" for v in views):
        raise Failure("no order went OutOfStock: the workload does not test refunds")


# --- what the read model says --------------------------------------------------------------------


def utc_day(timestamp: str) -> str:
    match = TIMESTAMP.fullmatch(timestamp)
    if match is None:
        raise Failure(f"timestamp {timestamp!r} is not RFC 3339")
    zone = "+00:00" if match.group(2) in ("Z", "z") else match.group(2)
    return datetime.fromisoformat(match.group(1) + zone).astimezone(timezone.utc).date().isoformat()


def all_orders(gateway: Gateway) -> dict[str, dict]:
    orders = {}
    for status in STATUSES:
        listed = gateway.call("GET", f"/api/seller/orders?status={status}", "seller")
        if len(listed) >= 500:
            raise Failure(f"{status}: the list is cut at 500 orders")
        orders.update({o["orderId"]: o for o in listed})
    return orders


def refund_day(gateway: Gateway, order: dict) -> str:
    """The day of the order's PayCanceled, from its timeline (the list has no timeline)."""
    view = gateway.order(order["orderId"], "seller")
    at = [t["at"] for t in view.get("timeline", []) if t["eventType"] == "PayCanceled"]
    if len(at) != 1:
        raise Failure(f"order {order['orderId']} is refunded with {len(at)} PayCanceled")
    return utc_day(at[0])


def expected(gateway: Gateway, state: dict) -> dict:
    orders = all_orders(gateway)
    missing = [o["orderId"] for o in state["orders"] if o["orderId"] not in orders]
    if missing:
        raise Failure(f"the seller's lists miss orders {missing}")
    days: dict[str, dict] = {}
    for order in orders.values():
        deposit = order.get("deposit") or {}
        if deposit.get("confirmedAt"):
            add(days, utc_day(deposit["confirmedAt"]), "revenue", "payments", deposit["amount"])
        if deposit.get("refund"):
            add(days, refund_day(gateway, order), "refunds", "refunded", deposit["amount"])
    return {"orders": len(orders), "days": dict(sorted(days.items())), "totals": totals(days)}


def add(days: dict, day: str, field: str, counter: str, amount: int) -> None:
    entry = days.setdefault(day, {"revenue": 0, "refunds": 0, "payments": 0, "refunded": 0})
    entry[field] += amount
    entry[counter] += 1


def totals(days: dict) -> dict:
    fields = ("revenue", "refunds", "payments", "refunded")
    return {f: sum(d[f] for d in days.values()) for f in fields}


# --- comparing -----------------------------------------------------------------------------------


def compare(want: dict, got: dict) -> list[str]:
    problems = [f"contract violation: {v}" for v in got.get("violations", [])]
    if want["totals"] != got["totals"]:
        problems.append(f"totals: read model {want['totals']}, ledger {got['totals']}")
    if totals(got["days"]) != got["totals"]:
        problems.append(f"the ledger's days do not sum to its totals {got['totals']}")
    for day in sorted(set(want["days"]) | set(got["days"])):
        if want["days"].get(day) != got["days"].get(day):
            problems.append(f"{day}: read model {want['days'].get(day)}, "
                            f"ledger {got['days'].get(day)}")
    if want["totals"]["refunds"] == 0:
        problems.append("the read model shows no refund: the workload tested none")
    return problems


# --- the command line ----------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["place", "settle", "expected", "compare"])
    p.add_argument("files", nargs="*")
    p.add_argument("--gateway")
    p.add_argument("--state")
    args = p.parse_args(argv)
    try:
        return run(args)
    except Failure as e:
        print(f"drive: {e}", file=sys.stderr)
        return 1


def run(args) -> int:
    if args.command == "compare":
        want, got = (json.load(open(f, encoding="utf-8")) for f in args.files)
        problems = compare(want, got)
        for problem in problems:
            print(f"MISMATCH {problem}")
        return 1 if problems else 0
    gateway = Gateway(args.gateway)
    if args.command == "place":
        state = place(gateway)
    else:
        state = json.load(open(args.state, encoding="utf-8"))
    if args.command == "settle":
        settle(gateway, state)
    if args.command == "expected":
        print(json.dumps(expected(gateway, state), indent=2))
        return 0
    with open(args.state, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
