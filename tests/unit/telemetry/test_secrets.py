"""LOGS_DATABASE_SECRET_ID: the database URL comes from a small server that follows the Parameters and Secrets
Lambda Extension's loopback API (GET /secretsmanager/get?secretId=..., token header required)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from telemetry.secrets import SecretError, database_url_from_secret, fetch_secret_string

TOKEN = "session-token-123"


@pytest.fixture
def extension() -> Iterator[tuple[int, dict[str, str]]]:
    secrets: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            url = urlparse(self.path)
            secret_id = parse_qs(url.query).get("secretId", [""])[0]
            if self.headers.get("X-Aws-Parameters-Secrets-Token") != TOKEN:
                status, body = 401, b"missing or wrong token"
            elif url.path != "/secretsmanager/get" or secret_id not in secrets:
                status, body = 400, b'{"message": "secret not found"}'
            else:
                status, body = 200, json.dumps({"ARN": "arn:x", "Name": secret_id,
                                                "SecretString": secrets[secret_id]}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], secrets
    server.shutdown()
    server.server_close()


def test_a_plain_url_secret_is_used_as_is(extension):
    port, secrets = extension
    secrets["logs-db"] = "postgresql://writer:s3cret@db.internal:5432/audit"
    secret = fetch_secret_string("logs-db", port=port, token=TOKEN)
    assert database_url_from_secret(secret) == "postgresql://writer:s3cret@db.internal:5432/audit"


def test_an_rds_json_secret_becomes_a_url_with_quoted_credentials(extension):
    port, secrets = extension
    secrets["arn:aws:secretsmanager:eu-west-1:1:secret:rds/db"] = json.dumps(
        {"username": "writer", "password": "p@ss:/word", "host": "db.internal", "port": 6432, "dbname": "audit",
         "engine": "postgres"})
    secret = fetch_secret_string("arn:aws:secretsmanager:eu-west-1:1:secret:rds/db", port=port, token=TOKEN)
    assert database_url_from_secret(secret) == "postgresql://writer:p%40ss%3A%2Fword@db.internal:6432/audit"


def test_a_wrong_token_is_a_clear_error_without_the_secret(extension):
    port, secrets = extension
    secrets["logs-db"] = "postgresql://writer:s3cret@db/audit"
    with pytest.raises(SecretError) as caught:
        fetch_secret_string("logs-db", port=port, token="wrong")
    assert "HTTP 401" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_no_extension_listening_names_the_missing_layer():
    with pytest.raises(SecretError, match="Parameters-and-Secrets-Lambda-Extension"):
        fetch_secret_string("logs-db", port=1, token=TOKEN, timeout_s=0.5)


def test_incomplete_json_secret_is_refused_without_echoing_it():
    with pytest.raises(SecretError) as caught:
        database_url_from_secret('{"username": "u", "password": "topsecret"}')
    assert "host" in str(caught.value)
    assert "topsecret" not in str(caught.value)
