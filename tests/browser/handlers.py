"""Handlers of the console's browser tests: short real sleeps, so a test can watch nodes change."""

import cerebelum


@cerebelum.handler("prepare")
def prepare(ctx):
    return {"items": ctx.input["items"], "customer": ctx.input.get("customer", "ada")}


@cerebelum.handler("pack_item")
def pack_item(ctx):
    ctx.sleep(ctx.input.get("pack_seconds", 0.8))
    return {"item": ctx.item, "box": ctx.index + 1}


@cerebelum.handler("send")
def send(ctx):
    return {"sent": True, "to": ctx.input.get("customer", "ada")}


@cerebelum.handler("flaky")
def flaky(ctx):
    if ctx.attempt < 3:
        raise ConnectionError(f"upstream timed out (attempt {ctx.attempt})")
    return {"attempts": ctx.attempt}


@cerebelum.handler("boom")
def boom(ctx):
    raise ValueError("card declined")
