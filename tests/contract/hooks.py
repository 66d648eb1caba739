"""Schemathesis hooks for the shop's contract tests (loaded through SCHEMATHESIS_HOOKS).

- Requests carry the caller's real identity: a bearer token from a real login at the
  gateway (CONTRACT_TOKEN), or, for a service called directly, `x-actor` (CONTRACT_ACTOR) with a
  fresh proof signed by the shop's identity secret (CONTRACT_IDENTITY_SECRET), as the gateway
  does.
- `no_server_error_but_a_documented_wait` replaces the built-in "no 5xx" check: any 5xx fails,
  but the one deliberate 503 — `/problems/unavailable` with Retry-After, the answer the shop
  documents for a busy part or a read waiting for a position not reached yet.
"""

import hashlib
import hmac
import os
import time

import schemathesis

PROOF_TTL_S = 60


def proof(secret: str, actor: str) -> str:
    expiry = int(time.time()) + PROOF_TTL_S
    tag = hmac.new(secret.encode(), f"{actor}\n{expiry}".encode(), hashlib.sha256).hexdigest()
    return f"{expiry}.{tag}"


@schemathesis.auth()
class ShopIdentity:
    """The caller's real identity, as schemathesis' auth: its own checks then also send requests
    without it, or with it broken, and expect them refused."""

    def get(self, case, context):
        return os.environ.get("CONTRACT_TOKEN") or os.environ.get("CONTRACT_ACTOR")

    def set(self, case, data, context):
        headers = case.headers if case.headers is not None else {}
        if os.environ.get("CONTRACT_TOKEN"):
            headers["Authorization"] = f"Bearer {data}"
        else:
            headers["x-actor"] = data
            headers["x-actor-proof"] = proof(os.environ["CONTRACT_IDENTITY_SECRET"], data)
        case.headers = headers


@schemathesis.check
def no_server_error_but_a_documented_wait(ctx, response, case):
    if response.status_code < 500:
        return None
    problem_type = ""
    try:
        problem_type = response.json().get("type", "")
    except Exception:
        pass
    deliberate = (
        response.status_code == 503
        and problem_type == "/problems/unavailable"
        and "retry-after" in {name.lower() for name in response.headers}
    )
    if not deliberate:
        raise AssertionError(f"server error {response.status_code}: {response.text[:300]}")
    return None
