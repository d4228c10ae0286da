"""`load/config.yaml`: parsed, validated, and errors that name the bad key."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated

import msgspec
import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"

# What the k6 scenario knows how to call, per service: path -> methods.
KNOWN_ENDPOINTS: dict[str, dict[str, set[str]]] = {
    "crud_service": {
        "/users/me": {"GET"},
        "/users/{user_id}": {"GET"},
        "/products": {"GET"},
        "/products/{product_id}": {"GET"},
    },
    "ecommerce_service": {
        "/cart": {"GET", "POST"},
        "/orders": {"GET"},
        "/orders/{order_id}": {"GET"},
        "/checkout": {"POST"},
    },
}

NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Weight = Annotated[float, msgspec.Meta(ge=0)]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def parse_duration(value: str | int | float, key: str) -> float:
    """Seconds from `90`, `90s`, `1.5m`, `2h`, `500ms`."""
    match = _DURATION.match(str(value).strip())
    if match is None:
        raise ConfigError(f"{key}: {value!r} is not a duration like 60s, 5m or 0")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


class Simulation(msgspec.Struct, forbid_unknown_fields=True):
    requests_per_second: Annotated[float, msgspec.Meta(gt=0, le=100_000)]
    duration: str | int = "60s"
    workers: Annotated[int, msgspec.Meta(ge=1, le=20_000)] = 600
    ramp_up: str | int = "0s"
    request_timeout: str | int | float = "10s"
    checkout_conversion: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.3
    product_popularity_skew: Annotated[float, msgspec.Meta(ge=0, le=5)] = 1.0
    seed_users: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 200
    seed_products: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100
    demo_password: Annotated[str, msgspec.Meta(min_length=8, max_length=128)] = "clickpulse-demo"


class Region(msgspec.Struct, forbid_unknown_fields=True):
    weight: Weight
    pool: str


class UserType(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    weight: Weight
    requests_per_session: tuple[
        Annotated[int, msgspec.Meta(ge=1)], Annotated[int, msgspec.Meta(ge=1)]
    ]
    think_time_seconds: tuple[NonNegative, NonNegative]


class Endpoint(msgspec.Struct, forbid_unknown_fields=True):
    path: str
    methods: list[str]
    weight: Weight
    user_types: list[str]


class Service(msgspec.Struct, forbid_unknown_fields=True):
    endpoints: list[Endpoint]
    # None: the local stack's address for this service (see default_base_url).
    base_url: str | None = None

    @property
    def url(self) -> str:
        """The base URL without a trailing slash (set once the config is loaded)."""
        assert self.base_url is not None
        return self.base_url.rstrip("/")


# Where the local stack serves each service: the port variables `clickpulse.stack` honours.
SERVICE_PORTS = {
    "crud_service": ("CLICKPULSE_CRUD_API_PORT", 8001),
    "ecommerce_service": ("CLICKPULSE_ECOMMERCE_API_PORT", 8002),
}


def default_base_url(service: str) -> str:
    variable, default = SERVICE_PORTS[service]
    raw = os.environ.get(variable, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"endpoints.{service}.base_url: {variable}={raw!r} is not a port")
    # Another host than the local stack's loopback: compose's load service sets the gateway.
    host = os.environ.get("CLICKPULSE_LOAD_TARGET_HOST", "127.0.0.1")
    return f"http://{host}:{int(raw)}"


class LoadConfig(msgspec.Struct, forbid_unknown_fields=True):
    simulation: Simulation
    user_types: list[UserType]
    endpoints: dict[str, Service]
    regions: dict[str, Region]
    thresholds: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return parse_duration(self.simulation.duration, "simulation.duration")

    @property
    def ramp_up_s(self) -> float:
        return parse_duration(self.simulation.ramp_up, "simulation.ramp_up")

    @property
    def request_timeout_s(self) -> float:
        return parse_duration(self.simulation.request_timeout, "simulation.request_timeout")


def _validate(config: LoadConfig) -> None:
    config.duration_s  # noqa: B018 - parse for its error
    config.ramp_up_s  # noqa: B018
    if config.request_timeout_s <= 0:
        raise ConfigError("simulation.request_timeout: must be more than 0 (e.g. 10s, 500ms)")
    names = [t.name for t in config.user_types]
    if not names:
        raise ConfigError("user_types: at least one user type is needed")
    if len(set(names)) != len(names):
        raise ConfigError(f"user_types: names must be unique, got {names}")
    if sum(t.weight for t in config.user_types) <= 0:
        raise ConfigError("user_types[*].weight: the weights sum to 0; give one a weight > 0")
    for i, t in enumerate(config.user_types):
        low, high = t.requests_per_session
        if low > high:
            raise ConfigError(f"user_types[{i}].requests_per_session: {low} > {high}")
        if t.think_time_seconds[0] > t.think_time_seconds[1]:
            raise ConfigError(f"user_types[{i}].think_time_seconds: min > max")
    if not config.regions or sum(r.weight for r in config.regions.values()) <= 0:
        raise ConfigError("regions: give at least one region a weight > 0")
    for name, region in config.regions.items():
        try:
            ipaddress.ip_network(region.pool)
        except ValueError as exc:
            raise ConfigError(f"regions.{name}.pool: {exc}") from None
    total = 0.0
    for service, spec in config.endpoints.items():
        known = KNOWN_ENDPOINTS.get(service)
        if known is None:
            raise ConfigError(
                f"endpoints.{service}: unknown service; known: {', '.join(KNOWN_ENDPOINTS)}"
            )
        if spec.base_url is None:
            spec.base_url = default_base_url(service)
        if not re.match(r"^https?://[^/\s]+/?$", spec.base_url):
            raise ConfigError(
                f"endpoints.{service}.base_url: {spec.base_url!r} is not http://host:port"
            )
        for i, endpoint in enumerate(spec.endpoints):
            key = f"endpoints.{service}.endpoints[{i}]"
            if endpoint.path not in known:
                raise ConfigError(
                    f"{key}.path: unknown endpoint {endpoint.path!r} for {service}; "
                    f"known: {', '.join(sorted(known))}"
                )
            bad = sorted(set(endpoint.methods) - known[endpoint.path])
            if not endpoint.methods or bad:
                raise ConfigError(
                    f"{key}.methods: {bad or 'none given'} not supported for {endpoint.path}; "
                    f"use {sorted(known[endpoint.path])}"
                )
            unknown_types = sorted(set(endpoint.user_types) - set(names))
            if unknown_types:
                raise ConfigError(f"{key}.user_types: unknown user types {unknown_types}")
            total += endpoint.weight
    if total <= 0:
        raise ConfigError("endpoints: the endpoint weights sum to 0; give one a weight > 0")
    for t in config.user_types:
        if t.weight > 0 and not any(
            t.name in e.user_types and e.weight > 0
            for s in config.endpoints.values()
            for e in s.endpoints
        ):
            raise ConfigError(f"user_types: {t.name!r} has no endpoint with weight > 0 to call")


def load_config(path: Path = DEFAULT_CONFIG) -> LoadConfig:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        config = msgspec.convert(raw, LoadConfig, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec says "... - at `$.simulation.requests_per_second`": name the key plainly.
        message = str(exc).replace("`$.", "`").replace("$.", "")
        raise ConfigError(f"{path}: {message}") from None
    _validate(config)
    return config
