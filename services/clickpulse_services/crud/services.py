"""Services over advanced-alchemy repositories for the CRUD API's resources."""

from __future__ import annotations

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService

from clickpulse_services.common.models import Product, User


class UserService(SQLAlchemyAsyncRepositoryService[User]):
    class Repo(SQLAlchemyAsyncRepository[User]):
        model_type = User

    repository_type = Repo


class ProductService(SQLAlchemyAsyncRepositoryService[Product]):
    class Repo(SQLAlchemyAsyncRepository[Product]):
        model_type = Product

    repository_type = Repo
