"""A streaming handler: a generator's chunks reach the caller as they are yielded (`curl -N` shows them arrive).

A dict yielded first would be a function URL's HTTP prelude (`{"statusCode": 200, "headers": {...}}`).
"""

import logging
import time

log = logging.getLogger(__name__)


def handler(event, context):
    count = event.get("count", 5) if isinstance(event, dict) else 5
    for i in range(1, count + 1):
        log.info("sending line %d", i)  # a record with this invocation's request id, like any other
        yield f"line {i} of {count} at {time.strftime('%H:%M:%S')}\n"
        time.sleep(0.5)
