"""Fetch the logs database URL at init from AWS Secrets Manager through the Parameters and Secrets Lambda
Extension, so the password is never in the function's environment.

The extension serves `GET http://localhost:<port>/secretsmanager/get?secretId=<id>` on loopback and requires the
`X-Aws-Parameters-Secrets-Token` header set to the function's `AWS_SESSION_TOKEN`. The secret may hold a
PostgreSQL URL/DSN as plain text, or the JSON that RDS-managed secrets use (`username`, `password`, `host`,
`port`, `dbname`). Error messages never contain the secret. Imports: stdlib.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote


class SecretError(RuntimeError):
    """The secret could not be read or understood; the message says why without revealing it."""


def fetch_secret_string(secret_id: str, *, port: int, token: str, timeout_s: float = 2.0) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", f"/secretsmanager/get?secretId={quote(secret_id, safe='')}",
                     headers={"X-Aws-Parameters-Secrets-Token": token})
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise SecretError(
            f"cannot reach the Parameters and Secrets extension on 127.0.0.1:{port} for secret {secret_id!r} "
            f"({exc}); add the AWS-Parameters-and-Secrets-Lambda-Extension layer to the function"
        ) from None
    finally:
        conn.close()
    if response.status != 200:
        raise SecretError(f"the Parameters and Secrets extension answered HTTP {response.status} for secret "
                          f"{secret_id!r}: {body[:200].decode('utf-8', 'replace')}")
    try:
        secret = json.loads(body)["SecretString"]
    except (ValueError, KeyError, TypeError):
        raise SecretError(f"secret {secret_id!r} has no SecretString (binary secrets are not supported)") from None
    if not isinstance(secret, str) or not secret.strip():
        raise SecretError(f"secret {secret_id!r} is empty")
    return secret


def database_url_from_secret(secret: str) -> str:
    """A plain URL/DSN is used as is; an RDS-style JSON secret becomes a `postgresql://` URL."""
    text = secret.strip()
    if not text.startswith("{"):
        return text
    try:
        fields = json.loads(text)
    except ValueError:
        raise SecretError("the secret looks like JSON but does not parse") from None
    if not isinstance(fields, dict):
        raise SecretError("the secret's JSON must be an object")
    if "url" in fields or "dsn" in fields:
        return str(fields.get("url") or fields.get("dsn"))
    missing = [k for k in ("username", "password", "host") if not fields.get(k)]
    if missing:
        raise SecretError(f"the secret's JSON lacks {', '.join(missing)}")
    user = quote(str(fields["username"]), safe="")
    password = quote(str(fields["password"]), safe="")
    port = fields.get("port") or 5432
    dbname = quote(str(fields.get("dbname") or fields.get("dbInstanceIdentifier") or "postgres"), safe="")
    return f"postgresql://{user}:{password}@{fields['host']}:{port}/{dbname}"
