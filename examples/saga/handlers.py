"""Handlers of the saga example: each step does its work and says so; a
declined card or a full flight fails for good, and the compensations undo
what was done (examples/saga/README.md)."""

import cerebelum


class CardDeclined(Exception):
    """Retrying will not help: `retry.non_retryable` fails the node at once."""


@cerebelum.handler("reserve_hotel")
def reserve_hotel(ctx):
    return {"reservation": f"H-{ctx.randint(1000, 9999)}", "nights": ctx.input.get("nights", 2)}


@cerebelum.handler("charge_card")
def charge_card(ctx):
    if ctx.data["card"].endswith("0000"):  # data: the node's `input` expression
        raise CardDeclined(f"card {ctx.data['card']} was declined")
    return {"charge": str(ctx.uuid4()), "amount": ctx.data["amount"], "key": ctx.idempotency_key}


@cerebelum.handler("book_flight")
def book_flight(ctx):
    if ctx.data.get("flight_full"):
        raise cerebelum.NonRetryable(f"flight {ctx.input.get('flight', 'XY123')} is full")
    return {"ticket": f"T-{ctx.randint(100000, 999999)}"}


@cerebelum.handler("refund_card")
def refund_card(ctx):
    return {"refunded": ctx.data["charge"]["charge"], "because": ctx.data["failed"]["message"]}


@cerebelum.handler("cancel_hotel")
def cancel_hotel(ctx):
    return {"cancelled": ctx.data["hotel"]["reservation"], "because": ctx.data["because"]}


@cerebelum.handler("confirm")
def confirm(ctx):
    return {"booked": True, "hotel": ctx.results["reserve_hotel"]["reservation"], "ticket": ctx.data["ticket"]}
