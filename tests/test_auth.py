"""Who may do what, against the running stack: sign-in, tokens that must be refused, ownership,
the admin role, key rotation, and the user on every span coming from the token only."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from clickhouse_connect.driver.client import Client
from conftest import bearer, crud_url, new_user, serve_crud_api, shop_url, sign_in
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from clickpulse.stack import jwt_keys
from clickpulse.stack.settings import Settings


@pytest.fixture(scope="module")
def crud(settings: Settings) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=crud_url(settings), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def shop(settings: Settings) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shop_url(settings), timeout=30) as client:
        yield client


def _signing_key(settings: Settings) -> tuple[str, Any]:
    """The stack's current signing key and its id, as the CRUD API would use them."""
    path = jwt_keys.keys(settings.jwt_keys_dir)[-1]
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    from clickpulse_services.common.signing_keys import thumbprint

    return thumbprint(key.public_key()), key  # type: ignore[arg-type]


def _claims(user_id: int, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "roles": [],
        "iss": "clickpulse-crud-api",
        "aud": "clickpulse",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_sign_in_gives_a_short_lived_rs256_token_whose_key_is_published(
    settings: Settings, crud: httpx.Client
) -> None:
    user, _ = new_user(settings)
    response = crud.post(
        "/auth/token",
        data={"username": user["email"], "password": "wrong password", "grant_type": "password"},
    )
    assert response.status_code == 401 and response.json()["detail"] == "wrong email or password"
    nobody = crud.post("/auth/token", data={"username": "nobody@example.com", "password": "x"})
    assert nobody.status_code == 401 and nobody.json() == response.json()

    token = sign_in(settings, user["email"], user["password"])
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    jwks = crud.get("/auth/jwks.json").json()
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    assert all("d" not in k and "p" not in k for k in jwks["keys"])  # public halves only
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == str(user["id"]) and claims["roles"] == []
    assert 0 < claims["exp"] - claims["iat"] <= 900


def _hostile_tokens(settings: Settings, user_id: int) -> dict[str, str]:
    kid, key = _signing_key(settings)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = _claims(user_id)
    hour = timedelta(hours=1)
    now = datetime.now(UTC)

    def signed(c: dict[str, Any], with_key: Any = key, k: str | None = kid) -> str:
        return jwt.encode(c, with_key, algorithm="RS256", headers={"kid": k} if k else None)

    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
    return {
        "forged signature": signed(claims, stranger),
        "alg none": unsigned,
        "alg confusion (HS256 keyed with the public key)": _hmac_signed(claims, kid, public_pem),
        "expired": signed(_claims(user_id, iat=now - 2 * hour, nbf=now - 2 * hour, exp=now - hour)),
        "not yet valid": signed(_claims(user_id, nbf=now + hour, exp=now + 2 * hour)),
        "wrong issuer": signed(_claims(user_id, iss="someone-else")),
        "wrong audience": signed(_claims(user_id, aud="another-system")),
        "unknown kid": signed(claims, k="no-such-key"),
        "no kid": signed(claims, k=None),
        "no subject": signed(_claims(user_id, sub=None)),
        "subject not a user id": signed(_claims(user_id, sub="admin")),
        "no expiry": signed(_claims(user_id, exp=None)),
        "100 KB token": "a" * 100_000,
        "not a JWT": "definitely.not.a-jwt",
        "tampered payload": _tampered(signed(claims)),
    }


def _hmac_signed(claims: dict[str, Any], kid: str, secret: bytes) -> str:
    """The classic algorithm-confusion attack, made by hand (PyJWT refuses to make it)."""
    as_json = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims.items()}
    head = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "kid": kid}).encode())
    body = jwt.utils.base64url_encode(json.dumps(as_json).encode())
    mac = hmac.new(secret, head + b"." + body, hashlib.sha256).digest()
    return b".".join((head, body, jwt.utils.base64url_encode(mac))).decode()


def _tampered(token: str) -> str:
    """The same signature over another subject: claims the admin's id."""
    header, _, signature = token.split(".")
    payload = jwt.utils.base64url_encode(b'{"sub":"1","roles":["admin"]}').decode()
    return f"{header}.{payload}.{signature}"


@pytest.mark.parametrize("service", ["crud", "shop"])
def test_hostile_tokens_are_401_with_a_clear_body_never_another_user(
    settings: Settings, crud: httpx.Client, shop: httpx.Client, service: str
) -> None:
    user, _ = new_user(settings)
    client = crud if service == "crud" else shop
    # A private operation, and a public one: a bad token is refused on both.
    paths = ["/users/me", "/products"] if service == "crud" else ["/cart", "/orders"]
    for name, token in _hostile_tokens(settings, user["id"]).items():
        for path in paths:
            response = client.get(path, headers=bearer(token))
            assert response.status_code == 401, (name, path, response.text)
            body = response.json()
            assert body["status_code"] == 401 and len(body["detail"]) > 10, (name, body)
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), name


def test_details_say_which_check_failed(settings: Settings, crud: httpx.Client) -> None:
    user, _ = new_user(settings)
    tokens = _hostile_tokens(settings, user["id"])
    expected = {
        "expired": "expired",
        "not yet valid": "not valid yet",
        "wrong issuer": "(iss)",
        "wrong audience": "(aud)",
        "unknown kid": "key this system does not know",
        "alg none": "algorithm must be RS256",
        "forged signature": "signature does not verify",
        "100 KB token": "larger than",
    }
    for name, needle in expected.items():
        detail = crud.get("/users/me", headers=bearer(tokens[name])).json()["detail"]
        assert needle in detail, (name, detail)


def test_carts_and_orders_belong_to_the_token_subject(
    settings: Settings, crud: httpx.Client, shop: httpx.Client, admin_token: str
) -> None:
    alice, alice_token = new_user(settings, "Alice")
    bob, bob_token = new_user(settings, "Bob")
    product = crud.post(
        "/products",
        json={"name": "Owned Thing", "category": "home", "price": "2.00", "stock": 20},
        headers=bearer(admin_token),
    ).json()
    cart = shop.post(
        "/cart", json={"product_id": product["id"], "quantity": 1}, headers=bearer(alice_token)
    ).json()
    line = cart["items"][0]["id"]
    order = shop.post(
        "/orders",
        json={"items": [{"product_id": product["id"], "quantity": 1}]},
        headers=bearer(alice_token),
    ).json()

    as_bob = bearer(bob_token)
    assert shop.get("/cart", headers=as_bob).json()["items"] == []
    assert shop.put(f"/cart/{line}", json={"quantity": 5}, headers=as_bob).status_code == 404
    assert shop.delete(f"/cart/{line}", headers=as_bob).status_code == 404
    assert shop.get(f"/orders/{order['id']}", headers=as_bob).status_code == 404
    assert shop.get("/orders", headers=as_bob).json()["total"] == 0
    assert crud.get(f"/users/{alice['id']}", headers=as_bob).status_code == 404
    assert crud.delete(f"/users/{alice['id']}", headers=as_bob).status_code == 404
    # Nothing of Alice's changed; she and the admin still see it.
    assert shop.get("/cart", headers=bearer(alice_token)).json()["items"][0]["quantity"] == 1
    assert shop.get(f"/orders/{order['id']}", headers=bearer(alice_token)).status_code == 200
    assert crud.get(f"/users/{alice['id']}", headers=bearer(admin_token)).status_code == 200
    assert bob["id"] != alice["id"]


def test_product_writes_and_demo_data_need_the_admin_role(
    settings: Settings, crud: httpx.Client, admin_token: str
) -> None:
    _, token = new_user(settings)
    body = {"name": "Nope", "category": "home", "price": "1.00"}
    calls = [
        ("POST", "/products", {"json": body}),
        ("PUT", "/products/1", {"json": {"stock": 0}}),
        ("DELETE", "/products/1", {}),
        ("POST", "/demo/generate-users", {"json": {"count": 1}}),
        ("POST", "/demo/generate-products", {"json": {"count": 1}}),
        ("GET", "/demo/users", {}),
        ("GET", "/users", {}),
    ]
    for method, path, kwargs in calls:
        anonymous = crud.request(method, path, **kwargs)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        user = crud.request(method, path, headers=bearer(token), **kwargs)
        assert user.status_code == 403, (method, path, user.text)
        assert "admin role" in user.json()["detail"]
    made = crud.post("/products", json=body, headers=bearer(admin_token))
    assert made.status_code == 201, made.text


def test_a_deleted_users_token_is_refused(
    settings: Settings, crud: httpx.Client, shop: httpx.Client
) -> None:
    user, token = new_user(settings)
    assert shop.get("/cart", headers=bearer(token)).status_code == 200
    assert crud.delete(f"/users/{user['id']}", headers=bearer(token)).status_code == 204
    for client, path in ((crud, "/users/me"), (shop, "/cart"), (shop, "/orders")):
        response = client.get(path, headers=bearer(token))
        assert response.status_code == 401, (path, response.text)
        assert "no longer exists" in response.json()["detail"]
    checkout = shop.post("/checkout", headers=bearer(token))
    assert checkout.status_code == 401 and "no longer exists" in checkout.json()["detail"]
    gone = shop.post("/cart", json={"product_id": 1}, headers=bearer(token))
    assert gone.status_code in (401, 404), gone.text  # 404 if product 1 is gone too
    assert gone.status_code != 201


def test_the_user_on_spans_is_the_tokens_subject_not_a_header(
    settings: Settings,
    crud: httpx.Client,
    shop: httpx.Client,
    reader: Client,
    wait_for: Callable[..., Any],
) -> None:
    user, token = new_user(settings)
    session = f"auth-{uuid.uuid4().hex[:12]}"
    claims = {"X-Session-Id": session, "X-User-Id": "1"}  # a claim: ignored
    assert shop.get("/cart", headers={**claims, **bearer(token)}).status_code == 200
    assert crud.get("/products", params={"limit": 1}, headers=claims).status_code == 200

    def rows() -> list[tuple[Any, ...]]:
        return reader.query(
            "SELECT endpoint, user_id FROM analytics.request_metrics"
            " WHERE session_id = {s:String} ORDER BY endpoint",
            parameters={"s": session},
        ).result_rows

    landed = wait_for(lambda: len(r := rows()) == 2 and r, timeout=60)
    assert landed == [("/cart", str(user["id"])), ("/products", "")]


def test_a_rotated_key_signs_new_tokens_and_the_shop_accepts_them_without_a_restart(
    settings: Settings, crud: httpx.Client, shop: httpx.Client, wait_for: Callable[..., Any]
) -> None:
    user, old_token = new_user(settings)
    result = subprocess.run(
        [sys.executable, "-m", "clickpulse.stack", "rotate-key"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "new signing key" in result.stdout
    time.sleep(1.2)  # the CRUD API looks at its key folder at most once a second
    new_token = sign_in(settings, user["email"], user["password"])
    assert (
        jwt.get_unverified_header(new_token)["kid"] != jwt.get_unverified_header(old_token)["kid"]
    )
    # The shop fetches the key set again for an unknown key id at most every 5 s (tokens with
    # made-up key ids cannot make it hammer the CRUD API): an earlier test may have just used
    # that turn, so the new key may take up to 5 s to be known there.
    accepted = wait_for(
        lambda: shop.get("/cart", headers=bearer(new_token)).status_code == 200,
        timeout=8,
        every=0.5,
    )
    assert accepted
    for token in (new_token, old_token):  # the previous key still verifies
        assert shop.get("/cart", headers=bearer(token)).status_code == 200
        assert crud.get("/users/me", headers=bearer(token)).status_code == 200


def test_a_retired_key_no_longer_verifies(settings: Settings, tmp_path: Path) -> None:
    """In a CRUD API of its own (its own key folder), so the stack's keys stay as they are."""
    folder = tmp_path / "keys"
    jwt_keys.ensure(folder)
    user, _ = new_user(settings)
    env = {"CLICKPULSE_JWT_KEYS_DIR": str(folder)}
    with serve_crud_api(settings, env=env) as (url, _):
        response = httpx.post(
            f"{url}/auth/token",
            data={"username": user["email"], "password": user["password"]},
        )
        token = response.json()["access_token"]
        assert httpx.get(f"{url}/users/me", headers=bearer(token)).status_code == 200
        jwt_keys.rotate(folder)
        jwt_keys.rotate(folder)  # keeps the newest two: the first key is gone
        time.sleep(1.2)
        refused = httpx.get(f"{url}/users/me", headers=bearer(token))
        assert refused.status_code == 401
        assert "key this system does not know" in refused.json()["detail"]


def test_one_abusive_client_is_limited_while_the_others_are_not(
    settings: Settings, reader: Client, wait_for: Callable[..., Any]
) -> None:
    """In a CRUD API of its own with small limits (the stack's are 1200/min per user)."""
    abuser, abuser_token = new_user(settings, "Abuser")
    _, other_token = new_user(settings, "Other")
    session = f"limits-{uuid.uuid4().hex[:12]}"
    env = {
        "CLICKPULSE_RATE_LIMIT_USER": "20/minute",
        "CLICKPULSE_RATE_LIMIT_ANONYMOUS": "10/minute",
    }
    with serve_crud_api(settings, env=env) as (url, _), httpx.Client(base_url=url) as client:
        s = {"X-Session-Id": session}
        abusive = [
            client.get("/users/me", headers={**s, **bearer(abuser_token)}) for _ in range(25)
        ]
        others = [client.get("/users/me", headers=bearer(other_token)) for _ in range(5)]
        anonymous = [
            client.get("/products", params={"limit": 1}, headers={"X-Forwarded-For": "10.1.9.9"})
            for _ in range(12)
        ]
        elsewhere = client.get(
            "/products", params={"limit": 1}, headers={"X-Forwarded-For": "10.2.9.9"}
        )

    assert [r.status_code for r in abusive] == [200] * 20 + [429] * 5
    limited = abusive[-1]
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["RateLimit-Limit"] == "20"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert "RateLimit-Policy" in limited.headers
    assert "rate limit reached: 20 requests per 60 s" in limited.json()["detail"]
    assert abusive[0].headers["RateLimit-Remaining"] == "19"
    assert [r.status_code for r in others] == [200] * 5
    assert [r.status_code for r in anonymous] == [200] * 10 + [429] * 2
    assert elsewhere.status_code == 200

    def landed() -> list[tuple[Any, ...]]:
        return reader.query(
            "SELECT status_code, user_id, count() FROM analytics.request_metrics"
            " WHERE session_id = {s:String} GROUP BY status_code, user_id ORDER BY status_code",
            parameters={"s": session},
        ).result_rows

    rows = wait_for(lambda: (r := landed()) and sum(c for *_, c in r) == 25 and r, timeout=60)
    assert rows == [(200, str(abuser["id"]), 20), (429, str(abuser["id"]), 5)]
