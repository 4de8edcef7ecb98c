"""Raises, to show the error JSON, the error-type header and the X-Ray cause a failure produces."""


class PaymentDeclined(Exception):
    pass


def handler(event, context):
    if isinstance(event, dict) and event.get("kind") == "value":
        raise ValueError(f"bad value: {event.get('value')!r}")
    raise PaymentDeclined("card ending 4242 was declined")
