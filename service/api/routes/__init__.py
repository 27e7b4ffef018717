"""The API's endpoints, by part: tenant messages, admin configuration, gateway receipts, operations."""

from service.api.routes import admin, messages, ops, receipts
from service.api.routing import Route

ROUTES: list[Route] = [*messages.ROUTES, *admin.ROUTES, *receipts.ROUTES, *ops.ROUTES]
