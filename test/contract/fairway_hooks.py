"""schemathesis hooks for Fairway's contract test (test/integration/contract.test.ts).

Two rules of the API that JSON Schema cannot state, applied to the generated requests so that
schemathesis does not call a request "schema-valid" that the document cannot describe as invalid:

- GET/HEAD /api/download: os and arch are separate query parameters; only the pairs of
  GET /api/platforms build (the test passes them in FAIRWAY_CONTRACT_PLATFORMS), and arm goes with
  arch arm only. (POST /api/builds's body schema ties them itself: one branch per os.)
- POST /api/builds, PUT /api/recipes/{name}: each plugin module once (uniqueItems compares whole
  items, not one property); GET/HEAD /api/download: each `p` module once, Caddy's version once.

Only requests that name valid values in a combination the server refuses are dropped; every
other generated request, valid or not, is sent.
"""

import json
import os

import schemathesis

_raw = os.environ.get("FAIRWAY_CONTRACT_PLATFORMS")
if _raw is None:
    raise RuntimeError("FAIRWAY_CONTRACT_PLATFORMS is not set: the contract test passes GET /api/platforms's list in it")
PLATFORMS = json.loads(_raw)
PAIRS = {(p["os"], p["arch"]) for p in PLATFORMS}
OSES = {p["os"] for p in PLATFORMS}
ARCHES = {p["arch"] for p in PLATFORMS}
ARMS = {"5", "6", "7"}
CADDY = "github.com/caddyserver/caddy/v2"


def _query_ok(query):
    os_, arch, arm = (v if isinstance(v, str) else None for v in (query.get("os"), query.get("arch"), query.get("arm")))
    if os_ in OSES and arch in ARCHES and (os_, arch) not in PAIRS:
        return False
    if arch in ARCHES and arch != "arm" and arm in ARMS:
        return False
    ps = query.get("p")
    if isinstance(ps, list):
        seen = {}
        for p in ps:
            if not isinstance(p, str) or p.strip() == "":
                continue
            left = p.strip().split("=", 1)[0]
            module = left.split("@", 1)[0]
            if module in seen and seen[module] != p.strip():
                return False
            seen[module] = p.strip()
            if module == CADDY and "@" in left and isinstance(query.get("version"), str) and query.get("version") not in ("", left.split("@", 1)[1]):
                return False
    return True


def _body_ok(body):
    plugins = body.get("plugins")
    if not isinstance(plugins, list):
        return True
    modules = [p.get("module") for p in plugins if isinstance(p, dict) and isinstance(p.get("module"), str)]
    return len(modules) == len(set(modules))


@schemathesis.hook
def filter_case(context, case):
    """Every phase (the coverage phase applies filter_case only)."""
    path = case.operation.path
    if path == "/api/download" and isinstance(case.query, dict):
        return _query_ok(case.query)
    if path in ("/api/builds", "/api/recipes/{name}") and case.operation.method.upper() in ("POST", "PUT") and isinstance(case.body, dict):
        return _body_ok(case.body)
    return True
