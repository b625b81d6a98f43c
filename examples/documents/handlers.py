"""Handlers of the document_pipeline example.

The "document" is simulated: `fetch_document` derives its pages from a small
built-in corpus, so the example needs no network and every run gives the
same result. `extract_text` plays a flaky OCR service that is down on the
first attempt of every node run and answers on the retry.
"""

from __future__ import annotations

import cerebelum

# The pages of the simulated scanned document.
PAGES = [
    "ACME Supplies Ltd - INVOICE No. 7731. Invoice date 2024-03-02. Bill to: Initech GmbH.",
    "Item  Qty  Unit price  Amount. Paper A4 x 40  4.20  168.00. Toner cartridge x 6  89.00  534.00. "
    "Subtotal 702.00. VAT 19% 133.38. Total due 835.38 EUR.",
    "Payment terms: net 30 days. Late payment interest 8% above base rate. Bank transfer to IBAN DE89 3704 0044.",
    "Delivery note: 3 parcels delivered 2024-02-28, received by the warehouse, signature: J. Smith.",
    "Thank you for your business. Questions about this invoice: billing@acme.example.",
]

# Keyword rules of the page classifier, first match wins.
RULES = [
    ("invoice_header", ("invoice no", "bill to")),
    ("line_items", ("qty", "unit price", "total due")),
    ("payment_terms", ("payment terms", "iban", "net 30")),
    ("delivery_note", ("delivery note", "parcels", "signature")),
]


@cerebelum.handler("fetch_document")
def fetch_document(ctx):
    """Download the document (simulated) and report what was fetched."""
    ctx.sleep(0.2)
    return {
        "document_id": ctx.input["document_id"],
        "url": ctx.input["url"],
        "content_type": "application/pdf",
        "page_count": len(PAGES),
        "bytes": 48_213,
        "fetched_at": ctx.now().isoformat(),
    }


@cerebelum.handler("extract_text")
def extract_text(ctx):
    """OCR the pages. Fails deterministically on the first attempt of a node run."""
    ctx.sleep(0.3)
    if ctx.attempt == 1:
        raise ConnectionError("OCR service unavailable")
    pages = [{"number": i + 1, "text": text} for i, text in enumerate(PAGES[: ctx.data["page_count"]])]
    return {"pages": pages, "attempt": ctx.attempt, "language": ctx.input.get("language", "en")}


@cerebelum.handler("classify_page")
def classify_page(ctx):
    """Classify one page (`ctx.item`) by keywords."""
    ctx.sleep(0.1)
    text = ctx.item["text"].lower()
    kind, hits = "other", 0
    for name, keywords in RULES:
        found = sum(1 for word in keywords if word in text)
        if found:
            kind, hits = name, found
            break
    return {
        "page": ctx.item["number"],
        "kind": kind,
        "confidence": round(0.5 + 0.5 * hits / 3, 2) if hits else 0.3,
        "words": len(ctx.item["text"].split()),
    }


@cerebelum.handler("summarise_document")
async def summarise_document(ctx):
    """Summarise the classified pages (`ctx.data` is the map's list of outputs)."""
    await ctx.sleep(0.2)
    pages = ctx.data
    kinds = sorted({page["kind"] for page in pages})
    words = sum(page["words"] for page in pages)
    headline = "invoice" if "invoice_header" in kinds else "document"
    return {
        "kinds": kinds,
        "words": words,
        "summary": f"{headline} {ctx.input['document_id']}: {len(pages)} pages, {words} words, sections: {', '.join(kinds)}",
    }
