"""The issue's walk-through with real processes: configure through the admin API, send through the
tenant API, the dispatcher forwards to the carrier simulator, whose receipt comes back to the API, and the
callback sender POSTs a signed Standard Webhooks callback for every status to a receiver, which verifies
each signature and orders them by sequence."""

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.integration.api import ADMIN_TOKEN
from tests.integration.processes import Process, Simulator, call_api, dispatcher, free_port, wait_until

RECEIPTS_TOKEN = "receipts-token-of-the-carrier"


class Receiver:
    """A status callback receiver on loopback that keeps every request's headers and body."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                received.append(({key.lower(): value for key, value in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/callbacks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _metrics(url, token=None):
    """Prometheus text as {series: value}."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
        lines = response.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def test_send_follow_to_delivered_and_receive_signed_callbacks(dsn, tmp_path, started):
    receiver = Receiver()
    api_port = free_port()
    base = f"http://127.0.0.1:{api_port}"
    env = {"DATABASE_URL": dsn, "FAIRLANE_ADMIN_TOKEN": ADMIN_TOKEN}
    api = Process(["api", "--port", str(api_port)], env=env)
    started.append(api)
    api.wait_for_line("api listening")
    simulator = Simulator(
        {
            "latency_ms": [1, 3],
            "receipts_url": f"{base}/v1/gateways/carrier/receipts",
            "receipts_token": RECEIPTS_TOKEN,
            "receipt_delay_ms": [5, 20],
        },
        tmp_path,
    )
    started.append(simulator)
    callbacks = Process(["callbacks"], env=env)
    started.append(callbacks)
    callbacks.wait_for_line("callbacks started")
    try:
        # the receiver listens on loopback over plain http: the operator allows callbacks to reach it
        loopback = {"allow_networks": ["127.0.0.0/8"], "allow_http": True}
        assert call_api(base, "PUT", "/v1/admin/callbacks", ADMIN_TOKEN, loopback)[0] == 200
        assert call_api(base, "PUT", "/v1/admin/tenant-sets/startups", ADMIN_TOKEN, {"weight": 1})[0] == 201
        status, tenant = call_api(
            base,
            "PUT",
            "/v1/admin/tenants/pied-piper",
            ADMIN_TOKEN,
            {"tenant_set": "startups", "status_callback": receiver.url},
        )
        assert status == 201
        sender = {"type": "long_code"}
        assert call_api(base, "PUT", "/v1/admin/tenants/pied-piper/senders/+15550107777", ADMIN_TOKEN, sender)[0] == 201
        gateway = {"kind": "simulator", "url": f"{simulator.url}/messages", "receipts_token": RECEIPTS_TOKEN}
        assert call_api(base, "PUT", "/v1/admin/gateways/carrier", ADMIN_TOKEN, gateway)[0] == 201
        destination = {"gateway": "carrier", "rate": 50}
        assert call_api(base, "PUT", "/v1/admin/destinations/US", ADMIN_TOKEN, destination)[0] == 201
        routes = {"routes": [{"prefix": "+1", "sender_type": "long_code", "destination": "US"}]}
        assert call_api(base, "PUT", "/v1/admin/routes", ADMIN_TOKEN, routes)[0] == 200
        metrics_port = free_port()
        started.append(dispatcher(dsn, "--metrics-port", str(metrics_port)))

        key = tenant["api_key"]
        status, message = call_api(
            base, "POST", "/v1/messages", key, {"to": "+14155550123", "body": "Your code: 271828"}
        )
        assert status == 202

        def statuses():
            events = call_api(base, "GET", f"/v1/messages/{message['id']}/events", key)[1]["events"]
            return [event["status"] for event in events]

        wait_until(lambda: "delivered" in statuses(), timeout=60, message="the message delivered")
        assert statuses() == ["queued", "sending", "sent", "delivered"]
        assert call_api(base, "GET", f"/v1/messages/{message['id']}", key)[1]["status"] == "delivered"

        dispatched = _metrics(f"http://127.0.0.1:{metrics_port}/metrics")
        assert dispatched['fairlane_dispatched_segments_total{destination="US",tenant="pied-piper"}'] == 1
        assert dispatched['fairlane_gateway_outcomes_total{gateway="carrier",outcome="sent"}'] == 1
        assert dispatched['fairlane_gateway_seconds_count{gateway="carrier"}'] == 1
        assert dispatched['fairlane_queue_wait_seconds_count{destination="US"}'] == 1
        accepted = _metrics(f"{base}/metrics", ADMIN_TOKEN)
        assert accepted['fairlane_messages_accepted_total{destination="US",tenant="pied-piper"}'] == 1
        assert accepted['fairlane_destination{destination="US",measure="quota_rate"}'] == 50

        wait_until(lambda: len(receiver.received) >= 4, timeout=60, message="four callbacks")
        webhook = Webhook(tenant["signing_secret"])
        payloads = [webhook.verify(body, headers) for headers, body in receiver.received]  # raises if forged
        payloads.sort(key=lambda payload: payload["data"]["sequence"])
        assert [payload["data"]["sequence"] for payload in payloads] == [1, 2, 3, 4]
        assert [payload["data"]["status"] for payload in payloads] == ["queued", "sending", "sent", "delivered"]
        assert {payload["data"]["message_id"] for payload in payloads} == {message["id"]}
        assert len({headers["webhook-id"] for headers, _ in receiver.received}) == 4
        # callbacks may arrive out of order (sequence restores it): tamper with the `queued` one, wherever it is
        headers, body = next((headers, body) for headers, body in receiver.received if '"queued"' in body)
        with pytest.raises(WebhookVerificationError):
            webhook.verify(body.replace('"queued"', '"failed"'), headers)
    finally:
        receiver.stop()
