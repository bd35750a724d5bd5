"""The readable HTML page of a record, for a person who scanned a label.

One self-contained page (inline CSS, no scripts, no external resources, so
it loads on a production floor's flaky network) laid out for a phone: the
product's fields first, as label and value pairs that wrap on a 390-pixel
screen; the handle; a link to the raw JSON; technical values (admin,
keys, sites) folded away below. Every text from the record is escaped.
"""

from __future__ import annotations

import html
from typing import Any

from idcore.handle import url_path
from idcore.values import ValueType, type_is

#: Value types shown under "Technical values" rather than as product fields.
TECHNICAL_TYPES = (
    ValueType.HS_ADMIN,
    ValueType.HS_SITE,
    ValueType.HS_PUBKEY,
    ValueType.HS_SECKEY,
    ValueType.HS_VLIST,
    ValueType.HS_NA_DELEGATE,
    "HS_SERV",
    "HS_ALIAS",
    "HS_SIGNATURE",
    "HS_CERT",
    "TEMPLATE",
)

#: Value types whose text is the product's name, for the page title.
TITLE_TYPES = ("PRODUCT_NAME", "NAME", "TITLE")

#: Longest value text shown in full; longer ones are cut with an ellipsis
#: (the raw JSON link has everything).
MAX_SHOWN_CHARS = 2000

_STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI","PingFang SC","Noto Sans CJK SC",sans-serif;
color:#1b1f24;background:#f4f6f8}
main{max-width:40rem;margin:0 auto;padding:1rem}
h1{font-size:1.35rem;margin:.2rem 0 .6rem;overflow-wrap:anywhere}
.handle{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.95rem;background:#fff;
border:1px solid #d0d7de;border-radius:6px;padding:.4rem .6rem;overflow-wrap:anywhere}
dl{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:1rem 0;padding:0}
dl div{padding:.55rem .75rem;border-top:1px solid #eaeef2}
dl div:first-child{border-top:0}
dt{font-size:.8rem;color:#57606a;text-transform:uppercase;letter-spacing:.03em}
dd{margin:.1rem 0 0;overflow-wrap:anywhere;white-space:pre-wrap}
.stale,.escrow{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5rem .75rem}
.missing{background:#ffebe9;border:1px solid #ff8182;border-radius:6px;padding:.5rem .75rem}
details{margin:1rem 0;color:#57606a}
a{color:#0969da}
footer{font-size:.85rem;color:#57606a;margin-top:1.5rem}
"""


def _label(value_type: str) -> str:
    """``PRODUCT_NAME`` -> ``Product name``; other spellings as written."""
    if value_type.isupper() or "_" in value_type:
        words = value_type.replace("_", " ").replace(".", " ").strip().lower()
        return words[:1].upper() + words[1:]
    return value_type


def _text(value: dict[str, Any]) -> str:
    data = value.get("data")
    if isinstance(data, dict):
        inner = data.get("value")
        if isinstance(inner, str):
            text = inner
        else:
            text = str(inner)
    else:
        text = str(data)
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "…"


def _is_link(value_type: str, text: str) -> bool:
    return type_is(value_type, ValueType.URL) and text.lower().startswith(("http://", "https://"))


def _row(value: dict[str, Any]) -> str:
    value_type = str(value.get("type", ""))
    text = _text(value)
    shown = html.escape(text)
    if _is_link(value_type, text):
        shown = f'<a href="{html.escape(text, quote=True)}" rel="nofollow noopener">{shown}</a>'
    return f"<div><dt>{html.escape(_label(value_type))}</dt><dd>{shown}</dd></div>"


def _title(values: list[dict[str, Any]], handle: str) -> str:
    for wanted in TITLE_TYPES:
        for value in values:
            if str(value.get("type", "")).upper() == wanted:
                return _text(value)
    return handle


#: Shown above a record answered from the parent's escrow copy.
ESCROW_NOTICE = (
    "The node that holds this identifier is down; this answer comes from the backup "
    "its parent node keeps and may be out of date."
)

#: Shown above a record served from an expired cache entry.
STALE_NOTICE = "The authoritative node could not be reached; this is the last known record."


def render_record_page(
    handle: str, values: list[dict[str, Any]] | None, *, json_url: str, stale: bool = False, escrow: bool = False
) -> str:
    """The page for ``handle``.

    Args:
        handle: the handle as asked.
        values: the record's values in REST JSON shape, or None when the
            handle does not exist.
        json_url: link to the raw JSON of the record.
        stale: the answer came from an expired cache entry.
        escrow: the answer came from the parent node's escrow copy (the
            identifier's own node is down).
    """
    escaped_handle = html.escape(handle)
    if values is None:
        title = "Identifier not found"
        body = f'<p class="missing">No record exists for <span class="handle">{escaped_handle}</span>.</p>'
        if escrow:
            body += f'<p class="escrow">{ESCROW_NOTICE}</p>'
    else:
        fields = [v for v in values if not any(type_is(str(v.get("type", "")), t) for t in TECHNICAL_TYPES)]
        technical = [v for v in values if v not in fields]
        title = _title(fields, handle)
        rows = "".join(_row(v) for v in sorted(fields, key=lambda v: v.get("index", 0)))
        body = f'<p class="handle">{escaped_handle}</p>'
        if stale:
            body += f'<p class="stale">{STALE_NOTICE}</p>'
        if escrow:
            body += f'<p class="escrow">{ESCROW_NOTICE}</p>'
        body += f"<dl>{rows}</dl>" if rows else "<p>This record has no product fields.</p>"
        if technical:
            tech_rows = "".join(_row(v) for v in technical)
            body += f"<details><summary>Technical values ({len(technical)})</summary><dl>{tech_rows}</dl></details>"
    link = html.escape(json_url, quote=True)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}"
        f'<footer><a href="{link}">Raw JSON</a> · resolved by idnode</footer></main></body></html>'
    )


def json_link(handle: str) -> str:
    """The relative URL of a handle's REST JSON on the same node."""
    return "/api/handles/" + url_path(handle)


def render_index_page() -> str:
    """The recursive node's front page: a form to look an identifier up."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>idnode resolver</title><style>{_STYLE}"
        "input{width:100%;font:inherit;padding:.5rem;border:1px solid #d0d7de;border-radius:6px}"
        "button{margin-top:.5rem;font:inherit;padding:.45rem 1rem}</style></head>"
        "<body><main><h1>Resolve an identifier</h1>"
        '<form method="get" action="/resolve"><input name="handle" placeholder="88.118.2/PRD-2024-000123" '
        'autocapitalize="off" autocorrect="off" spellcheck="false" required><button>Resolve</button></form>'
        '<footer><a href="/healthz">Health</a> · <a href="/metrics">Metrics</a></footer></main></body></html>'
    )
