"""Handlers of the article_approval example.

A draft carries a `revision` counter: `write_draft` starts at 0 and every
`revise_draft` adds one. The editor (`review_draft`) approves only once the
revision reaches `input.approve_at_revision` (default 3), so with the
default input the loop review -> decide -> revise runs three times before
the article is published. With `approve_at_revision` above 5 the loop edge
is exhausted and the article is escalated instead.
"""

from __future__ import annotations

import re

import cerebelum

COMMENTS = [
    "The introduction buries the point; lead with the problem.",
    "Section 2 needs a concrete example.",
    "Tighten the conclusion and add a call to action.",
    "Check the code samples against the current API.",
    "Cut the second half of section 3.",
]


def _slug(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


@cerebelum.handler("write_draft")
def write_draft(ctx):
    ctx.sleep(0.2)
    title = ctx.input["title"]
    return {
        "title": title,
        "author": ctx.input["author"],
        "revision": 0,
        "body": f"{title}\n\nFirst draft by {ctx.input['author']}.",
        "addressed": [],
    }


@cerebelum.handler("review_draft")
def review_draft(ctx):
    """Review the revision in `ctx.data` (the draft, or the last revision)."""
    ctx.sleep(0.2)
    draft = ctx.data
    wanted = ctx.input.get("approve_at_revision", 3)
    approved = draft["revision"] >= wanted
    comments = [] if approved else [COMMENTS[draft["revision"] % len(COMMENTS)]]
    return {
        "approved": approved,
        "revision": draft["revision"],
        "review_number": ctx.run,  # a loop re-runs this node: ctx.run counts the runs
        "comments": comments,
        "draft": draft,
    }


@cerebelum.handler("revise_draft")
def revise_draft(ctx):
    """`ctx.data` is the review (passed through `decide`): revise its draft."""
    ctx.sleep(0.2)
    review = ctx.data
    draft = review["draft"]
    revision = draft["revision"] + 1
    return {
        **draft,
        "revision": revision,
        "body": draft["body"] + f"\n\n[revision {revision}] addressed: {review['comments'][0]}",
        "addressed": [*draft["addressed"], *review["comments"]],
    }


@cerebelum.handler("publish_article")
def publish_article(ctx):
    ctx.sleep(0.1)
    draft = ctx.data["draft"]
    return {
        "url": f"https://blog.example.com/{ctx.now():%Y/%m}/{_slug(draft['title'])}",
        "revision": draft["revision"],
        "published_at": ctx.now().isoformat(),
    }


@cerebelum.handler("escalate_article")
def escalate_article(ctx):
    ctx.sleep(0.1)
    review = ctx.data
    return {
        "escalated_to": "editor-in-chief",
        "revision": review["revision"],
        "open_comments": review["comments"],
    }
