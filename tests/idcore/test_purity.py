"""The core package stays pure: importing it pulls in no networking, event
loop or Redis."""

import pkgutil
import subprocess
import sys

import idcore

FORBIDDEN = ("asyncio", "socket", "ssl", "selectors", "aiohttp", "redis", "sqlite3")


def test_importing_every_core_module_loads_no_io_module():
    modules = [f"idcore.{m.name}" for m in pkgutil.iter_modules(idcore.__path__)]
    assert "idcore.handle" in modules and "idcore.rest_json" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core imports I/O modules: {out.stdout.strip()}"
