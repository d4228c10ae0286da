"""One controller per resource of the CRUD API."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Annotated

import msgspec
from advanced_alchemy.extensions.litestar.providers import create_service_provider
from advanced_alchemy.service import OffsetPagination
from faker import Faker
from litestar import Controller, delete, get, post, put
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from clickpulse_services.common.telemetry import annotate
from clickpulse_services.common.web import MAX_PAGE, Id, Limit, Offset
from clickpulse_services.crud.reads import Reads
from clickpulse_services.crud.schemas import (
    Generated,
    GenerateRequest,
    ProductCreate,
    ProductRead,
    ProductUpdate,
    UserCreate,
    UserRead,
)
from clickpulse_services.crud.services import ProductService, UserService


def _reads(state: State) -> Reads:
    return Reads(state.engine)


# `?ids=3&ids=7`: the shop confirms a whole cart in one call, not one call per product.
ProductIds = Annotated[
    list[Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]] | None,
    Parameter(max_items=MAX_PAGE, description=f"only these product ids, at most {MAX_PAGE}"),
]

# Built once per process (use_cache): the hot GETs resolve no per-request dependency.
READS = Provide(_reads, use_cache=True, sync_to_thread=False)

CATEGORIES = ("electronics", "books", "home", "toys", "sports", "fashion", "grocery")
REGIONS = ("us-east", "us-west", "eu-west", "ap-south", "sa-east")


class UserController(Controller):
    path = "/users"
    tags = ["users"]
    dependencies = {"users": Provide(create_service_provider(UserService)), "reads": READS}

    @get(operation_id="ListUsers", summary="List users, newest first")
    async def list_users(
        self, reads: Reads, limit: Limit, offset: Offset
    ) -> OffsetPagination[UserRead]:
        return await reads.users(limit, offset)

    @post(operation_id="CreateUser", status_code=HTTP_201_CREATED)
    async def create_user(self, users: UserService, data: UserCreate) -> UserRead:
        user = await users.create(msgspec.structs.asdict(data), auto_commit=True)
        annotate(user_id=str(user.id))
        return users.to_schema(user, schema_type=UserRead)

    @get("/{user_id:int}", operation_id="GetUser")
    async def get_user(self, reads: Reads, user_id: Id) -> UserRead:
        return await reads.user(user_id)


class ProductController(Controller):
    path = "/products"
    tags = ["products"]
    dependencies = {
        "products": Provide(create_service_provider(ProductService)),
        "reads": READS,
    }

    @get(operation_id="ListProducts", summary="List products, optionally of one category or ids")
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

    @post(operation_id="CreateProduct", status_code=HTTP_201_CREATED)
    async def create_product(self, products: ProductService, data: ProductCreate) -> ProductRead:
        product = await products.create(msgspec.structs.asdict(data), auto_commit=True)
        annotate(product_id=product.id, product_category=product.category)
        return products.to_schema(product, schema_type=ProductRead)

    @get("/{product_id:int}", operation_id="GetProduct")
    async def get_product(self, reads: Reads, product_id: Id) -> ProductRead:
        annotate(product_id=product_id)
        product = await reads.product(product_id)
        annotate(product_category=product.category)
        return product

    @put("/{product_id:int}", operation_id="UpdateProduct")
    async def update_product(
        self, products: ProductService, product_id: Id, data: ProductUpdate
    ) -> ProductRead:
        annotate(product_id=product_id)
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        product = await products.update(changes, item_id=product_id, auto_commit=True)
        annotate(product_category=product.category)
        return products.to_schema(product, schema_type=ProductRead)

    @delete("/{product_id:int}", operation_id="DeleteProduct", status_code=HTTP_204_NO_CONTENT)
    async def delete_product(self, products: ProductService, product_id: Id) -> None:
        annotate(product_id=product_id)
        await products.delete(product_id, auto_commit=True)


class DemoController(Controller):
    """Realistic demo data, so a fresh stack has something to browse and buy."""

    path = "/demo"
    tags = ["demo"]
    dependencies = {
        "users": Provide(create_service_provider(UserService)),
        "products": Provide(create_service_provider(ProductService)),
    }

    @post("/generate-users", operation_id="GenerateUsers", status_code=HTTP_201_CREATED)
    async def generate_users(
        self, users: UserService, data: GenerateRequest | None = None
    ) -> Generated:
        count = (data or GenerateRequest()).count
        fake = Faker()
        rows = [
            {
                # The random suffix keeps emails unique across repeated generations.
                "email": f"{fake.user_name()}.{random.getrandbits(40)}@{fake.free_email_domain()}",
                "name": fake.name(),
                "region": random.choice(REGIONS),
            }
            for _ in range(count)
        ]
        await users.create_many(rows, auto_commit=True)
        return Generated(created=count, total=await users.count())

    @post("/generate-products", operation_id="GenerateProducts", status_code=HTTP_201_CREATED)
    async def generate_products(
        self, products: ProductService, data: GenerateRequest | None = None
    ) -> Generated:
        count = (data or GenerateRequest()).count
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
