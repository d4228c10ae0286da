"""What both OpenAPI specs promise, kept in one place: the statuses an operation can answer,
the headers that come with them, and request schemas that say which fields the server refuses.

Every operation except /health can answer three statuses, whatever it does, so `errors()` puts
them on each one:
- 401: a bad token is refused everywhere, public operations included (common/auth.py);
- 429: the rate limits count every call (common/auth.py);
- 503: admission control sheds requests past capacity (common/admission.py), and a database or
  catalogue outage is a 503 too (common/database.py, shop/catalogue.py).
An operation names the statuses of its own (403, 404, 409). Litestar documents 400 itself for
each operation that takes parameters or a body (its validation errors are 400s, not 422s);
`amend` says what it means here.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIHeader,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
)
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator


# The largest id a request may name. Ids are PostgreSQL BIGINTs, but Litestar writes a
# parameter's bounds into the spec as floats, where 2^63 - 1 reads as 2^63 (and clients in
# JavaScript lose precision past 2^53). 2^53 is exact as a float and far beyond any id the
# sequences here will hand out.
MAX_ID = 2**53


class ErrorBody(msgspec.Struct):
    """Every error answer: the status again, what went wrong, and for some the details
    (which fields failed validation, which products are short of stock)."""

    status_code: int
    detail: str
    extra: dict[str, Any] | list[Any] | None = None


EVERYWHERE = {
    401: "The bearer token is missing where the operation needs one, or is not valid (expired, "
    "forged, of a deleted user...): a bad token is refused even where none is needed",
    429: "Rate limit reached for this caller (per user when signed in, per client address "
    "otherwise); retry after Retry-After seconds",
    503: "Over capacity, or a service this one needs (database, catalogue) is unavailable; "
    "retry shortly (after Retry-After seconds when given)",
}
DEFAULTS = {
    403: "Signed in, but the operation needs the admin role",
    404: "No such resource (or not yours)",
    409: "Conflicts with the current state",
}
INVALID = "A parameter or the body is not valid: `extra` says which and why"
_NAMED = {"unauthorized": 401, "forbidden": 403, "not_found": 404, "conflict": 409}


def errors(*statuses: int, **why: str) -> dict[int, ResponseSpec]:
    """`responses=` for a route decorator: the given statuses and the three every operation can
    answer, described by `DEFAULTS` or by a keyword that names the status (`not_found=`,
    `conflict=`, `forbidden=`, `unauthorized=`) and so implies it."""
    described = {**EVERYWHERE, **DEFAULTS, **{_NAMED[name]: text for name, text in why.items()}}
    wanted = {*statuses, *(_NAMED[name] for name in why), *EVERYWHERE}
    return {
        status: ResponseSpec(
            data_container=ErrorBody, description=described[status], generate_examples=False
        )
        for status in sorted(wanted)
    }


_INTEGER = Schema(type=OpenAPIType.INTEGER)
_HEADERS: dict[str, dict[str, OpenAPIHeader]] = {
    "401": {
        "WWW-Authenticate": OpenAPIHeader(
            schema=Schema(type=OpenAPIType.STRING), required=True, description="`Bearer`"
        )
    },
    "429": {
        "Retry-After": OpenAPIHeader(
            schema=_INTEGER, required=True, description="seconds until the window resets"
        ),
        "RateLimit-Policy": OpenAPIHeader(
            schema=Schema(type=OpenAPIType.STRING),
            required=True,
            description="the limit: `<requests>; w=<window seconds>`",
        ),
        "RateLimit-Limit": OpenAPIHeader(schema=_INTEGER, required=True),
        "RateLimit-Remaining": OpenAPIHeader(schema=_INTEGER, required=True),
        "RateLimit-Reset": OpenAPIHeader(schema=_INTEGER, required=True),
    },
    "503": {
        "Retry-After": OpenAPIHeader(
            schema=_INTEGER, description="seconds to wait, when the service is over capacity"
        )
    },
}


def amend(spec: OpenAPI) -> OpenAPI:
    """What Litestar's spec generator cannot say, said in the generated spec:
    - the headers clients act on (when to retry, how to authenticate) on the 401, 429 and 503
      of `errors()`: a `ResponseSpec` carries no headers;
    - what Litestar's own 400 means here (its description is the generic HTTP one);
    - a query parameter that may be left out is a value or absent, never null (a query string
      has no null), where Litestar writes `str | None` as `oneOf: [string, null]`."""
    for path_item in (spec.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch", "head", "options", "trace"):
            operation: Operation | None = getattr(path_item, method, None)
            if operation is None:
                continue
            for status, response in (operation.responses or {}).items():
                if not isinstance(response, OpenAPIResponse):
                    continue
                if status in _HEADERS and _of_errors(response):
                    response.headers = {**(response.headers or {}), **_HEADERS[status]}
                if status == "400":
                    response.description = INVALID
            for parameter in operation.parameters or []:
                if isinstance(parameter, Parameter) and parameter.param_in == "query":
                    parameter.schema = _without_null(parameter.schema)
    return spec


def _of_errors(response: OpenAPIResponse) -> bool:
    """An answer `errors()` declared (not, say, the health check's own 503)."""
    media = (response.content or {}).get("application/json")
    schema = media.schema if media else None
    return isinstance(schema, Reference) and schema.ref.endswith(f"/{ErrorBody.__name__}")


def _without_null(schema: Schema | Reference | None) -> Schema | Reference | None:
    if not isinstance(schema, Schema) or not schema.one_of:
        return schema
    values = [
        b for b in schema.one_of if not (isinstance(b, Schema) and b.type == OpenAPIType.NULL)
    ]
    if len(values) != 1 or len(values) == len(schema.one_of) or not isinstance(values[0], Schema):
        return schema
    # Litestar puts the parameter's own constraints and description beside the `oneOf`.
    beside = {
        f.name: getattr(schema, f.name)
        for f in dataclasses.fields(schema)
        if f.name != "one_of" and getattr(schema, f.name) is not None
    }
    return dataclasses.replace(values[0], **beside)


class ClosedStructs(OpenAPISchemaPlugin):
    """A msgspec struct declared with `forbid_unknown_fields=True` refuses a body with a field
    it does not know (a typo such as `quantiy` must not silently become the default quantity),
    but Litestar's schema for it leaves `additionalProperties` open. This plugin runs before
    Litestar's own struct plugin, lets it build the schema, and closes it."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return (
            not field_definition.is_union
            and field_definition.is_subclass_of(msgspec.Struct)
            and field_definition.type_.__struct_config__.forbid_unknown_fields
        )

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        builder = next(
            plugin
            for plugin in schema_creator.plugins
            if plugin is not self
            and isinstance(plugin, OpenAPISchemaPlugin)
            and plugin.is_plugin_supported_field(field_definition)
        )
        schema = builder.to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema
