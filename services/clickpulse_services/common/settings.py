"""Service settings, from `CLICKPULSE_*` environment variables (the stack sets them)."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Where a client address comes from decides its region. The load generator draws client
# addresses from these pools (sent as X-Forwarded-For), so every region shows up in the data.
DEFAULT_REGIONS: dict[str, str] = {
    "10.1.0.0/16": "us-east",
    "10.2.0.0/16": "us-west",
    "10.3.0.0/16": "eu-west",
    "10.4.0.0/16": "ap-south",
    "10.5.0.0/16": "sa-east",
    "127.0.0.0/8": "local",
    "::1/128": "local",
}


def _networks(raw: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(item.strip()) for item in raw.split(",") if item.strip())


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, choices[0])
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


RATE_UNITS = ("second", "minute", "hour", "day")


def parse_rate(raw: str) -> tuple[int, str]:
    """ "1200/minute" -> (1200, "minute")."""
    count, _, unit = raw.partition("/")
    if not count.strip().isdigit() or int(count) < 1 or unit.strip() not in RATE_UNITS:
        raise ValueError(f"{raw!r}: expected COUNT/UNIT, UNIT one of {', '.join(RATE_UNITS)}")
    return int(count), unit.strip()


def _rate(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default)
    try:
        parse_rate(value)
    except ValueError as exc:
        raise ValueError(f"{name}={exc}") from None
    return value


@dataclass(frozen=True)
class ServiceSettings:
    service_name: str
    database_url: str
    otlp_endpoint: str
    crud_api_url: str
    telemetry_enabled: bool = True
    trusted_proxies: tuple[IPNetwork, ...] = field(default_factory=tuple)
    regions: tuple[tuple[IPNetwork, str], ...] = field(default_factory=tuple)
    metrics_interval_ms: int = 5000
    # Capacity per process (README, "Capacity"): requests in flight and waiting for a slot
    # before shedding with 503 (common/admission.py), database connections, how long a request
    # may wait for one, and how long the shop waits for the CRUD API (well below the 10 s the
    # load generator's clients wait).
    max_in_flight: int = 8
    max_queued: int = 256
    db_pool_size: int = 16
    db_pool_timeout_s: int = 1
    catalogue_timeout_s: float = 2.0
    # "relay": spans are encoded and sent by a helper process (common/span_relay.py);
    # "inline": by the SDK's export thread in the service process, as before.
    span_export: str = "relay"
    # Authentication (README, "Who may do what"). The CRUD API signs access tokens with the
    # newest private key of `jwt_keys_dir` (or `jwt_private_key`, a PEM, in compose) and
    # publishes the public keys at /auth/jwks.json; the shop verifies against that JWKS.
    jwt_keys_dir: str = ""
    jwt_private_key: str = ""
    jwks_url: str = ""
    jwt_issuer: str = "clickpulse-crud-api"
    jwt_audience: str = "clickpulse"
    token_ttl_s: int = 900
    admin_email: str = "admin@clickpulse.test"
    admin_password: str = ""
    demo_password: str = "clickpulse-demo"
    # Requests per window, per token subject (signed-in callers) and per client address
    # (anonymous ones): "COUNT/UNIT", UNIT one of second, minute, hour, day.
    rate_limit_user: str = "1200/minute"
    rate_limit_anonymous: str = "600/minute"

    @classmethod
    def from_env(cls, service_name: str) -> ServiceSettings:
        env = os.environ
        regions_raw = env.get("CLICKPULSE_REGIONS")
        regions = json.loads(regions_raw) if regions_raw else DEFAULT_REGIONS
        crud_api_url = env.get("CLICKPULSE_CRUD_API_URL", "http://127.0.0.1:8001")
        return cls(
            service_name=service_name,
            database_url=env.get(
                "CLICKPULSE_DATABASE_URL",
                "postgresql+asyncpg://clickpulse:clickpulse@127.0.0.1:5432/clickpulse",
            ),
            otlp_endpoint=env.get("CLICKPULSE_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            crud_api_url=crud_api_url,
            telemetry_enabled=env.get("CLICKPULSE_TELEMETRY", "on") != "off",
            # Only these peers may tell us the client's address in X-Forwarded-For.
            trusted_proxies=_networks(
                env.get("CLICKPULSE_TRUSTED_PROXIES", "127.0.0.1/32,::1/128")
            ),
            regions=tuple((ipaddress.ip_network(cidr), name) for cidr, name in regions.items()),
            metrics_interval_ms=int(env.get("CLICKPULSE_METRICS_INTERVAL_MS", "5000")),
            max_in_flight=int(env.get("CLICKPULSE_MAX_IN_FLIGHT", "8")),
            max_queued=int(env.get("CLICKPULSE_MAX_QUEUED", "256")),
            db_pool_size=int(env.get("CLICKPULSE_DB_POOL_SIZE", "16")),
            db_pool_timeout_s=int(env.get("CLICKPULSE_DB_POOL_TIMEOUT", "1")),
            catalogue_timeout_s=float(env.get("CLICKPULSE_CATALOGUE_TIMEOUT", "2.0")),
            span_export=_choice(env, "CLICKPULSE_SPAN_EXPORT", ("relay", "inline")),
            jwt_keys_dir=env.get("CLICKPULSE_JWT_KEYS_DIR", ""),
            jwt_private_key=env.get("CLICKPULSE_JWT_PRIVATE_KEY", ""),
            jwks_url=env.get("CLICKPULSE_JWKS_URL", f"{crud_api_url}/auth/jwks.json"),
            jwt_issuer=env.get("CLICKPULSE_JWT_ISSUER", "clickpulse-crud-api"),
            jwt_audience=env.get("CLICKPULSE_JWT_AUDIENCE", "clickpulse"),
            token_ttl_s=int(env.get("CLICKPULSE_TOKEN_TTL", "900")),
            admin_email=env.get("CLICKPULSE_ADMIN_EMAIL", "admin@clickpulse.test"),
            admin_password=env.get("CLICKPULSE_ADMIN_PASSWORD", ""),
            demo_password=env.get("CLICKPULSE_DEMO_PASSWORD", "clickpulse-demo"),
            rate_limit_user=_rate(env, "CLICKPULSE_RATE_LIMIT_USER", "1200/minute"),
            rate_limit_anonymous=_rate(env, "CLICKPULSE_RATE_LIMIT_ANONYMOUS", "600/minute"),
        )


@cache
def get_settings(service_name: str) -> ServiceSettings:
    return ServiceSettings.from_env(service_name)
