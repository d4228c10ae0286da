"""One controller per resource of the CRUD API."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from advanced_alchemy.exceptions import NotFoundError
from advanced_alchemy.extensions.litestar.providers import create_service_provider
from advanced_alchemy.service import OffsetPagination
from faker import Faker
from litestar import Controller, Request, delete, get, post, put
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body, Parameter
from litestar.response import Response
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from clickpulse_services.common.auth import (
    NO_TOKEN,
    OPTIONAL_TOKEN,
    current_user,
    requires_admin,
    requires_user,
)
from clickpulse_services.common.openapi import MAX_ID, errors
from clickpulse_services.common.signing_keys import SigningKeys
from clickpulse_services.common.telemetry import annotate
from clickpulse_services.common.tokens import Principal, unauthorized
from clickpulse_services.common.web import MAX_PAGE, Id, Limit, Offset
from clickpulse_services.crud.reads import Reads
from clickpulse_services.crud.schemas import (
    DEMO_EMAIL_DOMAIN,
    DemoUser,
    Generated,
    GenerateRequest,
    ProductCreate,
    ProductRead,
    ProductUpdate,
    TokenRequest,
    TokenResponse,
    UserCreate,
    UserRead,
    product_columns,
)
from clickpulse_services.crud.services import Accounts, ProductService, UserService


def _reads(state: State) -> Reads:
    return Reads(state.read_pool)


def _accounts(state: State) -> Accounts:
    return Accounts(Reads(state.read_pool), state.issuer)


def _mine_or_admin(me: Principal, user_id: int) -> None:
    """Someone else's account is "not found" to a caller who is not an admin: the answer does
    not tell which ids exist."""
    if user_id != me.id and not me.is_admin:
        raise NotFoundException(detail=f"user {user_id} does not exist")


# `?ids=3&ids=7`: the shop confirms a whole cart in one call, not one call per product.
# msgspec.Meta validates each id; Parameter puts the same bounds into the spec.
ProductIds = Annotated[
    list[Annotated[int, msgspec.Meta(ge=1, le=MAX_ID), Parameter(ge=1, le=MAX_ID)]] | None,
    Parameter(max_items=MAX_PAGE, description=f"only these product ids, at most {MAX_PAGE}"),
]

# Built once per process (use_cache): the hot GETs resolve no per-request dependency.
READS = Provide(_reads, use_cache=True, sync_to_thread=False)

CATEGORIES = ("electronics", "books", "home", "toys", "sports", "fashion", "grocery")
REGIONS = ("us-east", "us-west", "eu-west", "ap-south", "sa-east")


class AuthController(Controller):
    path = "/auth"
    tags = ["auth"]
    dependencies = {"accounts": Provide(_accounts, use_cache=True, sync_to_thread=False)}

    @post(
        "/token",
        operation_id="SignIn",
        summary="Sign in (OAuth2 password flow): an access token for an email and password",
        status_code=HTTP_200_OK,
        security=NO_TOKEN,
        responses=errors(unauthorized="Wrong email or password, or a bad token sent along"),
    )
    async def sign_in(
        self,
        accounts: Accounts,
        data: Annotated[TokenRequest, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[TokenResponse]:
        token = await accounts.sign_in(data.username, data.password)
        # RFC 6749 5.1: token responses must not be cached.
        return Response(token, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    @get(
        "/jwks.json",
        operation_id="GetSigningKeys",
        summary="The public keys access tokens are signed with (JSON Web Key Set)",
        security=NO_TOKEN,
        responses=errors(),
    )
    async def jwks(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        keys: SigningKeys = request.app.state.key_source
        return Response(keys.jwks(), headers={"Cache-Control": "max-age=60"})


class UserController(Controller):
    path = "/users"
    tags = ["users"]
    dependencies = {"users": Provide(create_service_provider(UserService)), "reads": READS}

    @get(
        operation_id="ListUsers",
        summary="List users, newest first (admin)",
        guards=[requires_admin],
        responses=errors(403),
    )
    async def list_users(
        self, reads: Reads, limit: Limit, offset: Offset
    ) -> OffsetPagination[UserRead]:
        return await reads.users(limit, offset)

    @post(
        operation_id="CreateUser",
        summary="Sign up: a new user who can then sign in",
        status_code=HTTP_201_CREATED,
        security=OPTIONAL_TOKEN,
        responses=errors(conflict="A user with this email exists"),
    )
    async def create_user(self, users: UserService, data: UserCreate) -> UserRead:
        user = await users.sign_up(msgspec.structs.asdict(data))
        return users.to_schema(user, schema_type=UserRead)

    @get(
        "/me",
        operation_id="GetMe",
        summary="The signed-in user",
        guards=[requires_user],
        responses=errors(),
    )
    async def get_me(self, request: Request[Any, Any, Any], reads: Reads) -> UserRead:
        me = current_user(request)
        try:
            return await reads.user(me.id)
        except NotFoundError:
            raise unauthorized(f"the token's user {me.id} no longer exists") from None

    @get(
        "/{user_id:int}",
        operation_id="GetUser",
        summary="A user: yourself, or anyone for an admin",
        guards=[requires_user],
        responses=errors(not_found="No such user, or someone else (unless you are an admin)"),
    )
    async def get_user(
        self, request: Request[Any, Any, Any], reads: Reads, user_id: Id
    ) -> UserRead:
        _mine_or_admin(current_user(request), user_id)
        return await reads.user(user_id)

    @delete(
        "/{user_id:int}",
        operation_id="DeleteUser",
        summary="Delete a user with their cart and orders: yourself, or anyone for an admin",
        status_code=HTTP_204_NO_CONTENT,
        guards=[requires_user],
        responses=errors(not_found="No such user, or someone else (unless you are an admin)"),
    )
    async def delete_user(
        self, request: Request[Any, Any, Any], users: UserService, user_id: Id
    ) -> None:
        _mine_or_admin(current_user(request), user_id)
        await users.erase(user_id)


class ProductController(Controller):
    """Reading the catalogue is public; changing it needs the admin role."""

    path = "/products"
    tags = ["products"]
    dependencies = {
        "products": Provide(create_service_provider(ProductService)),
        "reads": READS,
    }

    @get(
        operation_id="ListProducts",
        summary="List products, optionally of one category or ids",
        security=OPTIONAL_TOKEN,
        responses=errors(),
    )
    async def list_products(
        self,
        reads: Reads,
        limit: Limit,
        offset: Offset,
        category: str | None = None,
        ids: ProductIds = None,
    ) -> OffsetPagination[ProductRead]:
        if category is not None:
            annotate(product_category=category)
        return await reads.products(limit, offset, category, ids or ())

    @post(
        operation_id="CreateProduct",
        summary="Add a product (admin)",
        status_code=HTTP_201_CREATED,
        guards=[requires_admin],
        responses=errors(403),
    )
    async def create_product(self, products: ProductService, data: ProductCreate) -> ProductRead:
        product = await products.create(product_columns(data), auto_commit=True)
        annotate(
            product_id=product.id,
            product_name=product.name,
            product_category=product.category,
        )
        return products.to_schema(product, schema_type=ProductRead)

    @get(
        "/{product_id:int}",
        operation_id="GetProduct",
        summary="A product",
        security=OPTIONAL_TOKEN,
        responses=errors(not_found="No such product"),
    )
    async def get_product(self, reads: Reads, product_id: Id) -> ProductRead:
        annotate(product_id=product_id)
        product = await reads.product(product_id)
        annotate(product_name=product.name, product_category=product.category)
        return product

    @put(
        "/{product_id:int}",
        operation_id="UpdateProduct",
        summary="Change a product's fields: those sent (admin)",
        guards=[requires_admin],
        responses=errors(403, not_found="No such product"),
    )
    async def update_product(
        self, products: ProductService, product_id: Id, data: ProductUpdate
    ) -> ProductRead:
        annotate(product_id=product_id)
        product = await products.update(product_columns(data), item_id=product_id, auto_commit=True)
        annotate(product_name=product.name, product_category=product.category)
        return products.to_schema(product, schema_type=ProductRead)

    @delete(
        "/{product_id:int}",
        operation_id="DeleteProduct",
        summary="Remove a product (admin)",
        status_code=HTTP_204_NO_CONTENT,
        guards=[requires_admin],
        responses=errors(
            403,
            not_found="No such product",
            conflict="The product is in orders, which keep it",
        ),
    )
    async def delete_product(self, products: ProductService, product_id: Id) -> None:
        annotate(product_id=product_id)
        await products.delete(product_id, auto_commit=True)


class DemoController(Controller):
    """Realistic demo data, so a fresh stack has something to browse and buy (admin only)."""

    path = "/demo"
    tags = ["demo"]
    guards = [requires_admin]
    dependencies = {
        "users": Provide(create_service_provider(UserService)),
        "products": Provide(create_service_provider(ProductService)),
        "reads": READS,
    }

    @get(
        "/users",
        operation_id="ListDemoUsers",
        summary="Users made by generate-users, who sign in with the demo password",
        responses=errors(403),
    )
    async def list_demo_users(
        self, reads: Reads, limit: Limit, offset: Offset
    ) -> OffsetPagination[DemoUser]:
        return await reads.demo_users(limit, offset)

    # The body is required (`{}` for the default count): a body the spec requires must not
    # be optional on the server, and an absent one is more likely a client's mistake.
    @post(
        "/generate-users",
        operation_id="GenerateUsers",
        summary="Add demo users",
        status_code=HTTP_201_CREATED,
        responses=errors(403),
    )
    async def generate_users(
        self, request: Request[Any, Any, Any], users: UserService, data: GenerateRequest
    ) -> Generated:
        count = data.count
        fake = Faker()
        rows = [
            {
                # The random suffix keeps emails unique across repeated generations.
                "email": f"{fake.user_name()}.{random.getrandbits(40)}@{DEMO_EMAIL_DOMAIN}",
                "name": fake.name(),
                "region": random.choice(REGIONS),
            }
            for _ in range(count)
        ]
        total = await users.create_demo(rows, request.app.state.settings.demo_password)
        return Generated(created=count, total=total)

    @post(
        "/generate-products",
        operation_id="GenerateProducts",
        summary="Add demo products",
        status_code=HTTP_201_CREATED,
        responses=errors(403),
    )
    async def generate_products(self, products: ProductService, data: GenerateRequest) -> Generated:
        count = data.count
        fake = Faker()
        rows = [
            {
                "name": f"{fake.color_name()} {fake.word()} {fake.word()}".title(),
                "category": random.choice(CATEGORIES),
                "price": Decimal(random.randint(199, 99_999)) / 100,
                "stock": random.randint(50, 5_000),
            }
            for _ in range(count)
        ]
        await products.create_many(rows, auto_commit=True)
        return Generated(created=count, total=await products.count())
