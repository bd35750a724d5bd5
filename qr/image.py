"""A symbol as an image: PNG at a printer's resolution, SVG in millimetres.

Both draw exactly the symbol's modules (quiet zone included) at a module
size snapped to whole printer dots (:class:`~qr.symbol.ModuleSize`), so the
PNG prints with every module the same number of dots and the SVG scales to
the same millimetres.
"""

from __future__ import annotations

import io

from PIL import Image

from qr.symbol import ModuleSize, Symbol

#: bytes.translate table: module 1 (dark) to grey 0, module 0 (light) to 255.
_MODULE_TO_GREY = bytes([255, 0]) + bytes(254)


def symbol_image(symbol: Symbol, module: ModuleSize) -> Image.Image:
    """A 1-bit Pillow image of ``symbol``, ``module.dots`` pixels a module,
    its resolution recorded as ``module.dpi``."""
    size = symbol.modules
    # one pixel a module (dark 1 -> 0 black, light 0 -> 255 white in mode "L"),
    # scaled up without smoothing; no dithering, the pixels are already 0/255
    pixels = b"".join(symbol.rows).translate(_MODULE_TO_GREY)
    small = Image.frombytes("L", (size, size), pixels)
    scaled = small.resize((size * module.dots, size * module.dots), Image.Resampling.NEAREST)
    full = scaled.convert("1", dither=Image.Dither.NONE)
    full.info["dpi"] = (module.dpi, module.dpi)
    return full


def png_bytes(symbol: Symbol, module: ModuleSize) -> bytes:
    """``symbol`` as a PNG whose pHYs chunk says ``module.dpi``, so print
    dialogs and label software size it right."""
    out = io.BytesIO()
    symbol_image(symbol, module).save(out, format="PNG", dpi=(module.dpi, module.dpi), optimize=False)
    return out.getvalue()


def svg_text(symbol: Symbol, module: ModuleSize) -> str:
    """``symbol`` as SVG: width and height in millimetres, one path of the
    dark modules (a rectangle per horizontal run) in module units."""
    size = symbol.modules
    runs = []
    for y, row in enumerate(symbol.rows):
        x = 0
        while x < size:
            if row[x]:
                start = x
                while x < size and row[x]:
                    x += 1
                runs.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    side = f"{size * module.mm:.4f}".rstrip("0").rstrip(".")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{side}mm" height="{side}mm" '
        f'viewBox="0 0 {size} {size}" shape-rendering="crispEdges">'
        f'<rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(runs)}"/></svg>\n'
    )
