"""Turns a validated LoadConfig into the plan k6 plays: seeds demo data if the services have
too little, collects the ids sessions use, and expands endpoints per method."""

from __future__ import annotations

import ipaddress
import math
import os
from typing import Any

import httpx

from clickpulse_load.config import LoadConfig, default_base_url

MAX_IDS = 5000
# Time per iteration (one request: sessions think without holding a VU) that the pre-allocated
# VUs cover, so that latency up to this long needs no VU started mid-run (k6 drops iterations
# while it starts one). k6 hands iterations to its VUs in turn, so this is also how often each
# VU gets one, and a due session waits for its VU's turn: much more would blur think times
# (scenario.js makes sessions due early by the mean wait, which evens out the mean only).
LATENCY_MARGIN_S = 0.5


ADMIN_EMAIL = "admin@clickpulse.test"
SIGN_IN_PATH = "/auth/token"


def admin_password() -> str:
    """The administrator's password: CLICKPULSE_ADMIN_PASSWORD, else the local stack's."""
    if password := os.environ.get("CLICKPULSE_ADMIN_PASSWORD"):
        return password
    from clickpulse.stack.settings import Settings

    settings = Settings.from_env()
    if not settings.secrets_file.exists():
        raise ValueError(
            "seeding demo data needs the administrator's password: set"
            " CLICKPULSE_ADMIN_PASSWORD (the local stack keeps it in .stack/secrets.env)"
        )
    return settings.admin_password


def sign_in(client: httpx.Client, email: str, password: str) -> str:
    response = client.post("/auth/token", data={"username": email, "password": password})
    if response.status_code == 401:
        raise ValueError(f"{client.base_url}: {email} cannot sign in: {response.json()['detail']}")
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def _items(client: httpx.Client, path: str, wanted: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while len(items) < min(wanted, MAX_IDS):
        page = client.get(path, params={"limit": 100, "offset": offset})
        page.raise_for_status()
        batch = page.json()["items"]
        if not batch:
            break
        items.extend(batch)
        offset += 100
    return items


def _ensure(client: httpx.Client, path: str, generate: str, wanted: int) -> list[dict[str, Any]]:
    total = client.get(path, params={"limit": 1}).raise_for_status().json()["total"]
    missing = wanted - total
    while missing > 0:
        count = min(missing, 1000)
        client.post(generate, json={"count": count}).raise_for_status()
        missing -= count
    return _items(client, path, wanted)


# Checkouts take stock and nothing gives it back: after a few runs the hot products (the Zipf
# head) were sold out, every checkout a 409, and the "checkouts but no revenue" alert fired.
# Before each run a product of the plan below RESTOCK_BELOW is brought back up to RESTOCK_TO.
RESTOCK_BELOW = 1_000
RESTOCK_TO = 5_000


def _restock(client: httpx.Client, products: list[dict[str, Any]]) -> int:
    low = [p for p in products if p.get("stock", RESTOCK_TO) < RESTOCK_BELOW]
    for product in low:
        client.put(f"/products/{product['id']}", json={"stock": RESTOCK_TO}).raise_for_status()
    return len(low)


def seed(config: LoadConfig) -> tuple[list[dict[str, Any]], list[int]]:
    """Demo users (id, email: they sign in with the demo password) and product ids, generated
    as the administrator first if the services have fewer than the config asks for, and the
    products restocked if a run could sell them out."""
    crud = config.endpoints.get("crud_service")
    if crud is None:
        raise ValueError("endpoints.crud_service is needed to find users and products")
    with httpx.Client(base_url=crud.url, timeout=60) as client:
        token = sign_in(client, ADMIN_EMAIL, admin_password())
        client.headers["Authorization"] = f"Bearer {token}"
        users = _ensure(client, "/demo/users", "/demo/generate-users", config.simulation.seed_users)
        products = _ensure(
            client, "/products", "/demo/generate-products", config.simulation.seed_products
        )
        _restock(client, products)
    return [{"id": u["id"], "email": u["email"]} for u in users], [p["id"] for p in products]


def build_plan(
    config: LoadConfig, *, run_id: str, users: list[dict[str, Any]], product_ids: list[int]
) -> dict[str, Any]:
    sim = config.simulation
    # Little's law: VUs busy = arrival rate x time per iteration; an iteration is one request
    # (sessions think between iterations without holding a VU), so think time does not count.
    busy = sim.requests_per_second * LATENCY_MARGIN_S
    regions = []
    for name, region in config.regions.items():
        network = ipaddress.ip_network(region.pool)
        if network.version != 4:
            raise ValueError(f"regions.{name}.pool: the k6 scenario draws IPv4 addresses only")
        regions.append(
            {
                "name": name,
                "weight": region.weight,
                "first": int(network.network_address) + (1 if network.num_addresses > 2 else 0),
                "size": max(1, network.num_addresses - 2),
            }
        )
    endpoints = [
        {
            "service": service,
            "base_url": spec.url,
            "path": endpoint.path,
            "method": method,
            "weight": endpoint.weight / len(endpoint.methods),
            "user_types": endpoint.user_types,
        }
        for service, spec in config.endpoints.items()
        for endpoint in spec.endpoints
        for method in endpoint.methods
    ]
    crud = config.endpoints.get("crud_service")
    # Each session's first request; never drawn by weight, listed for its latency line.
    endpoints.append(
        {
            "service": "crud_service",
            "base_url": crud.url if crud is not None else default_base_url("crud_service"),
            "path": SIGN_IN_PATH,
            "method": "POST",
            "weight": 0,
            "user_types": [],
        }
    )
    duration = config.duration_s or 24 * 3600  # 0 = until stopped
    return {
        "run_id": run_id,
        "rps": sim.requests_per_second,
        "duration_s": math.ceil(duration),
        "ramp_up_s": math.ceil(config.ramp_up_s),
        "max_vus": sim.workers,
        "request_timeout_ms": max(1, round(config.request_timeout_s * 1000)),
        "pre_allocated_vus": max(1, min(sim.workers, math.ceil(busy))),
        "conversion": sim.checkout_conversion,
        "skew": sim.product_popularity_skew,
        "users": users,
        "demo_password": sim.demo_password,
        "product_ids": product_ids,
        "regions": regions,
        "user_types": [
            {
                "name": t.name,
                "weight": t.weight,
                "requests_min": t.requests_per_session[0],
                "requests_max": t.requests_per_session[1],
                "think_min": t.think_time_seconds[0],
                "think_max": t.think_time_seconds[1],
            }
            for t in config.user_types
        ],
        "endpoints": endpoints,
        "thresholds": {metric: [rule] for metric, rule in config.thresholds.items()},
    }
