"""The route table: every endpoint once, with what the app needs to serve it (method, path, handler) and
what /openapi.json says of it (summary, credentials, body, answers, errors, parameters). The app is built
from this table and the OpenAPI document is generated from it, so the two cannot disagree."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Credentials = Literal["tenant", "admin", "receipts", "none"]


@dataclass(frozen=True)
class Parameter:
    name: str
    where: Literal["query", "header"]
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    credentials: Credentials
    answers: dict[int, type[BaseModel] | None]
    """Successful answers: HTTP status -> the body's shape (None: no body)."""
    errors: tuple[int, ...] = ()
    """HTTP statuses of the errors it may answer (405, 500 and 503 are added to every route)."""
    body: type[BaseModel] | None = None
    path_fields: tuple[str, ...] = ()
    """Fields of the body's shape that the path gives (an entity's name): not in the body."""
    parameters: tuple[Parameter, ...] = ()
    content_type: str = "application/json"
    """Of the successful answers."""
    extra_schemas: tuple[type[BaseModel], ...] = field(default=())
    """Shapes the body refers to without containing them (a batch's items)."""


def add_routes(router: web.UrlDispatcher, routes: list[Route]) -> None:
    for route in routes:
        router.add_route(route.method, route.path, route.handler)
