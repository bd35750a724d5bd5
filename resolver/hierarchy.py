"""A whole identifier hierarchy on loopback, in one process.

:class:`LocalHierarchy` starts one authoritative node per prefix (by
default the top-level ``88``, the secondary ``88.118`` and the enterprise
``88.118.2``), each its own aiohttp server on its own port, and files each
child's site with its parent as a ``0.NA/<child>`` delegation record, so a
recursive resolver bootstrapped at the top node finds every identifier by
referrals. ``idnode demo`` runs one over SQLite files; tests and benchmarks
run them over SQLite or the in-memory store.
"""

from __future__ import annotations

import datetime
import secrets
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import orjson
from aiohttp import web

from idcore.handle import prefix_handle
from idcore.settings import DATABASE_NAME, DEFAULT_RESOLVER_URL
from idcore.values import ALL_ADMIN_PERMISSIONS, AdminRef, HandleValue, ReservedIndex, ValueReference, ValueType
from registry import batch
from registry.escrow import Escrow
from registry.memory_store import MemoryStore
from registry.node_setup import SITE_INDEX, init_node, prefix_record_values, site_for
from registry.service import Registry
from registry.sqlite_store import SqliteStore
from resolver.node_app import build_node_app

#: The demo's hierarchy: top-level node, secondary (industry) node, enterprise node.
DEFAULT_PREFIXES = ("88", "88.118", "88.118.2")

#: Sample products registered per batch transaction.
SAMPLE_BATCH = 500

#: Every how many sample products one carries a URL value (the proxy form
#: redirects those; the others show their product page).
SAMPLE_URL_EVERY = 50

_PRODUCTS = (
    ("RV-40 减速机", "RV reducer"),
    ("伺服电机 SM-750", "Servo motor"),
    ("谐波减速器 HD-17", "Harmonic drive"),
    ("工业相机 IC-5M", "Industrial camera"),
    ("PLC 控制器 K-200", "PLC controller"),
)


def sample_handle(prefix: str, number: int) -> str:
    """The demo's ``number``-th product identifier under ``prefix``."""
    return f"{prefix}/PRD-2026-{number:06d}"


def sample_values(prefix: str, number: int) -> list[dict[str, Any]]:
    """REST JSON values of a sample product: name, model, batch, date,
    enterprise, origin; every SAMPLE_URL_EVERY-th one a URL too."""
    name, kind = _PRODUCTS[number % len(_PRODUCTS)]
    made = datetime.date(2026, 1, 1) + datetime.timedelta(days=number % 300)
    fields = [
        ("PRODUCT_NAME", name),
        ("PRODUCT_TYPE", kind),
        ("MODEL", f"M-{number % 97:02d}"),
        ("BATCH", f"B-{made:%Y%m}-{number // 100:03d}"),
        ("MANUFACTURE_DATE", made.isoformat()),
        ("ENTERPRISE", "示例智能装备有限公司"),
        ("ORIGIN", "江苏省苏州市"),
    ]
    values = [{"index": 2001 + i, "type": t, "data": {"format": "string", "value": v}} for i, (t, v) in enumerate(fields)]
    if number % SAMPLE_URL_EVERY == 0:
        url = f"https://example.com/products/{prefix}/{number}"
        values.insert(0, {"index": 1, "type": "URL", "data": {"format": "string", "value": url}})
    return values


@dataclass
class LocalNode:
    """One running node of the hierarchy."""

    prefix: str
    registry: Registry
    runner: web.AppRunner
    host: str
    port: int
    admin: ValueReference
    secret: str | None = None  #: the admin secret, when this process chose it
    _site: web.TCPSite | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Stop answering, as a stopped server would: the port closes and so
        do the keep-alive connections clients still hold (they would be
        answered otherwise). :meth:`start` resumes on the same port."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        server = self.runner.server
        if server is not None:
            for connection in list(server.connections):
                connection.force_close()

    async def start(self) -> None:
        if self._site is None:
            site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
            await site.start()
            self._site = site


class LocalHierarchy:
    """Nodes for ``prefixes`` (each the parent of the next) on ``host``.

    Args:
        prefixes: top first; each must extend the one before it.
        data_dir: folder for one SQLite node folder per prefix (reused when
            it exists); None keeps everything in memory.
        host: loopback address to serve on.
        ports: one per prefix; 0 (the default) picks free ports.
        admin_secret: the admin secret of in-memory nodes (SQLite nodes keep
            the one ``idnode init`` generated, in their ``admin.json``).
        resolver_url: where the nodes' QR codes point phones (the demo's
            recursive node).
        escrow_dir: folder for one escrow (data) folder per prefix, so each
            node keeps its children's backups; None: no escrow.
    """

    def __init__(
        self,
        prefixes: Sequence[str] = DEFAULT_PREFIXES,
        *,
        data_dir: Path | None = None,
        host: str = "127.0.0.1",
        ports: Sequence[int] | None = None,
        admin_secret: str | None = None,
        resolver_url: str = DEFAULT_RESOLVER_URL,
        escrow_dir: Path | None = None,
    ) -> None:
        for parent, child in zip(prefixes, prefixes[1:]):
            if not child.upper().startswith(parent.upper() + "."):
                raise ValueError(f"{child} is not directly under {parent}")
        self.prefixes = tuple(prefixes)
        self.data_dir = data_dir
        self.host = host
        self.ports = tuple(ports) if ports is not None else (0,) * len(prefixes)
        if len(self.ports) != len(self.prefixes):
            raise ValueError("give one port per prefix")
        self.admin_secret = admin_secret or secrets.token_urlsafe(18)
        self.resolver_url = resolver_url
        self.escrow_dir = escrow_dir
        self.nodes: dict[str, LocalNode] = {}
        self._stack = AsyncExitStack()

    @property
    def top(self) -> LocalNode:
        return self.nodes[self.prefixes[0]]

    @property
    def enterprise(self) -> LocalNode:
        return self.nodes[self.prefixes[-1]]

    async def __aenter__(self) -> LocalHierarchy:
        try:
            for prefix, port in zip(self.prefixes, self.ports):
                self.nodes[prefix] = await self._start(prefix, port)
            for parent, child in zip(self.prefixes, self.prefixes[1:]):
                await self.delegate(parent, child)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _open_registry(self, prefix: str, port: int) -> tuple[Registry, str | None]:
        if self.data_dir is None:
            store = await self._stack.enter_async_context(MemoryStore())
            registry = Registry(store)
            await registry.open()
            return registry, self.admin_secret
        folder = self.data_dir / prefix
        secret = None
        if not (folder / DATABASE_NAME).exists():
            secret = (await init_node(folder, prefix, site_address=self.host, site_port=port or 1)).secret
        store = await self._stack.enter_async_context(SqliteStore(folder / DATABASE_NAME))
        registry = Registry(store)
        await registry.open()
        return registry, secret

    async def _start(self, prefix: str, port: int) -> LocalNode:
        registry, secret = await self._open_registry(prefix, port)
        escrow = Escrow(self.escrow_dir / prefix) if self.escrow_dir is not None else None
        app = build_node_app(registry, resolver_url=self.resolver_url, escrow=escrow)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, self.host, port, reuse_address=True)
        await site.start()
        actual = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        admin = ValueReference(prefix_handle(prefix).to_text(), ReservedIndex.AUTH)
        node = LocalNode(prefix, registry, runner, self.host, actual, admin, secret, site)
        own_site = site_for(self.host, actual)
        if prefix.upper() not in {p.upper() for p in registry.homed_prefixes}:
            await registry.home_prefix(prefix, prefix_record_values(prefix, self.admin_secret.encode(), own_site))
        else:  # a reused folder on another port: publish where the node is now
            value = HandleValue(SITE_INDEX, ValueType.HS_SITE, own_site)
            await registry.add_values(prefix_handle(prefix), [value], admin)
        return node

    async def delegate(self, parent: str, child: str) -> None:
        """File ``child``'s site with ``parent`` (its ``0.NA/<child>`` record),
        administered by the parent's admin and the child's."""
        parent_node, child_node = self.nodes[parent], self.nodes[child]
        record = prefix_handle(child)
        values = [
            HandleValue(SITE_INDEX, ValueType.HS_SITE, site_for(child_node.host, child_node.port)),
            HandleValue(
                ReservedIndex.ADMIN,
                ValueType.HS_ADMIN,
                AdminRef(parent_node.admin.handle, parent_node.admin.index, ALL_ADMIN_PERMISSIONS),
            ),
        ]
        await parent_node.registry.put(record, values, parent_node.admin)

    async def register_samples(self, count: int, *, prefix: str | None = None) -> list[str]:
        """Register ``count`` sample products at the node of ``prefix`` (the
        enterprise by default); existing ones are left as they are."""
        node = self.nodes[prefix or self.prefixes[-1]]
        handles = []
        for start in range(1, count + 1, SAMPLE_BATCH):
            items = []
            for number in range(start, min(count, start + SAMPLE_BATCH - 1) + 1):
                handle = sample_handle(node.prefix, number)
                handles.append(handle)
                line = {"handle": handle, "values": sample_values(node.prefix, number)}
                items.append(batch.parse_line(number, orjson.dumps(line)))
            results = await node.registry.apply_batch(items, node.admin)
            refused = [r for r in results if r["responseCode"] != 1]
            if refused:
                raise RuntimeError(f"sample registration refused: {refused[0]}")
        return handles
