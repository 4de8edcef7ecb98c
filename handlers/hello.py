"""The smallest plain handler: what the demo invokes."""

import logging

log = logging.getLogger(__name__)


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    log.info("greeting %s", name)
    return {"message": f"Hello, {name}!", "request_id": context.aws_request_id}
