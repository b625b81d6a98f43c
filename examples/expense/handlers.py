"""Handlers of the expense_approval example: the decisions come from people, as signals."""

from __future__ import annotations

import cerebelum


@cerebelum.handler("submit_expense")
def submit_expense(ctx):
    expense = ctx.input
    if expense.get("amount", 0) <= 0:
        raise cerebelum.NonRetryable("an expense needs a positive amount")
    return {"id": f"exp-{ctx.randint(1000, 9999)}", "employee": expense["employee"], "amount": expense["amount"]}


@cerebelum.handler("escalate")
def escalate(ctx):
    # ctx.data is the error the manager's wait failed with (kind timeout)
    return {"escalated_to": "director", "because": ctx.data["message"]}


@cerebelum.handler("pay")
def pay(ctx):
    decision = ctx.data["decision"]
    return {"paid": ctx.data["expense"]["amount"], "approved_by": decision.get("by"), "at": ctx.now().isoformat()}


@cerebelum.handler("notify_rejection")
def notify_rejection(ctx):
    decision = ctx.data["decision"]
    return {"rejected": ctx.data["expense"]["id"], "by": decision.get("by"), "reason": decision.get("reason", "")}
