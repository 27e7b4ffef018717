"""The API in the test's event loop, served on loopback by aiohttp's TestServer, with BASIC applied."""

from dataclasses import dataclass

from aiohttp.test_utils import TestClient, TestServer

from service.api.app import create_app
from service.api.state import ApiSettings
from tests.integration.fixtures import apply_basic

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
JSON = {"Content-Type": "application/json"}


@dataclass
class Api:
    client: TestClient
    keys: dict[str, str]

    def tenant(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def send(self, tenant: str, body: dict, **headers: str):
        return await self.client.post("/v1/messages", json=body, headers={**self.tenant(tenant), **headers})


async def start_api(conn, dsn: str, *, tenant_rate: float = 0, **overrides) -> Api:
    keys = apply_basic(conn, **overrides).api_keys
    client = TestClient(TestServer(create_app(ApiSettings(dsn, ADMIN_TOKEN, tenant_rate))))
    await client.start_server()
    return Api(client, keys)
