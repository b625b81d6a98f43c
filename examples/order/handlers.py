"""Handlers of the order_fulfilment example.

Every handler takes the step context `ctx` and returns JSON. Randomness and
time come from `ctx` (`ctx.uuid4()`, `ctx.randint()`, `ctx.sleep()`), so an
execution is deterministic: replaying it gives the same tracking numbers.
The short sleeps stand in for calls to real services and make the live
progress of `cerebelum run` visible; with `--virtual-time` they take no time.
"""

from __future__ import annotations

import cerebelum

CARRIERS = ["DHL", "UPS", "GLS"]
REVIEW_LIMIT = 20_000  # above this, the reviewer always refuses
MIN_ACCOUNT_AGE_DAYS = 30  # big orders from brand-new accounts are refused


@cerebelum.handler("validate_order")
def validate_order(ctx):
    """Check the order and compute its total (sync handler: runs in a worker thread)."""
    order = ctx.input
    items = order.get("items") or []
    if not items:
        raise ValueError(f"order {order.get('order_id')} has no items")
    lines = []
    for line in items:
        if line["qty"] < 1 or line["unit_price"] < 0:
            raise ValueError(f"bad line for {line['sku']}: qty {line['qty']}, price {line['unit_price']}")
        lines.append({**line, "line_total": round(line["qty"] * line["unit_price"], 2)})
    ctx.sleep(0.1)
    return {
        "order_id": order["order_id"],
        "currency": order.get("currency", "EUR"),
        "items": lines,
        "total": round(sum(line["line_total"] for line in lines), 2),
    }


@cerebelum.handler("fraud_review")
async def fraud_review(ctx):
    """Manual/fraud review of a big order (async handler: awaits ctx.sleep)."""
    await ctx.sleep(0.3)
    total = ctx.results["validate"]["total"]
    age = ctx.input["customer"].get("account_age_days", 0)
    reasons = []
    if total > REVIEW_LIMIT:
        reasons.append(f"total {total} above the review limit {REVIEW_LIMIT}")
    if age < MIN_ACCOUNT_AGE_DAYS:
        reasons.append(f"account is only {age} days old")
    return {"approved": not reasons, "reviewer": "risk-team", "reasons": reasons}


@cerebelum.handler("reject_order")
def reject_order(ctx):
    """The review refused the order: nothing was charged."""
    ctx.sleep(0.1)
    return {"order_id": ctx.input["order_id"], "reason": "; ".join(ctx.data["reasons"])}


@cerebelum.handler("charge_card")
async def charge_card(ctx):
    """Charge the card. `ctx.data` is the node's `input` expression: amount, currency, card.

    A real payment API would receive `ctx.idempotency_key` (stable across
    retries and recoveries of this node run), so a retried charge is never
    taken twice.
    """
    await ctx.sleep(0.3)
    return {
        "charge_id": f"ch_{ctx.uuid4().hex[:16]}",
        "amount": ctx.data["amount"],
        "currency": ctx.data["currency"],
        "card": f"**** {ctx.data['card']['last4']}",
        "idempotency_key": ctx.idempotency_key,
    }


@cerebelum.handler("ship_item")
def ship_item(ctx):
    """Ship one line item (one map iteration: `ctx.item`, `ctx.index`)."""
    ctx.sleep(0.2)
    carrier = ctx.choice(CARRIERS)
    return {
        "sku": ctx.item["sku"],
        "qty": ctx.item["qty"],
        "carrier": carrier,
        "tracking_number": f"{carrier}-{ctx.randint(10**9, 10**10 - 1)}",
        "line": ctx.index,
    }


@cerebelum.handler("send_email")
def send_email(ctx):
    customer = ctx.input["customer"]
    shipments = ctx.results["ship"]
    ctx.sleep(0.1)
    return {
        "channel": "email",
        "to": customer["email"],
        "subject": f"Your order {ctx.input['order_id']} is on its way ({len(shipments)} parcels)",
    }


@cerebelum.handler("send_sms")
def send_sms(ctx):
    ctx.sleep(0.1)
    return {
        "channel": "sms",
        "to": ctx.input["customer"]["phone"],
        "text": f"Order {ctx.input['order_id']} shipped. Tracking: {ctx.results['ship'][0]['tracking_number']}",
    }
