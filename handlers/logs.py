"""Logs at every level, with `extra=` fields and an exception, and prints: what the log pipeline records."""

import logging

log = logging.getLogger(__name__)


def handler(event, context):
    lines = int(event.get("lines", 3)) if isinstance(event, dict) else 3
    for i in range(lines):
        log.info("line %d of %d", i + 1, lines, extra={"line_no": i + 1})
    log.debug("only visible with AWS_LAMBDA_LOG_LEVEL=DEBUG")
    log.warning("remaining time %d ms", context.get_remaining_time_in_millis())
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("caught and logged")
    print("printed to stdout")
    return {"logged": lines}
