"""Finding fonts for labels: a monospace face for handles and a face that
draws Chinese for product lines, checked glyph by glyph.

fontconfig is asked first (its absence is tolerated), then the files of
well-known Debian font packages. Pillow cannot ask a font for a glyph
index, so coverage is tested by drawing: a character the font lacks draws
the same "missing glyph" shape as a code point no font maps.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from idcore.errors import InvalidValue, NodeError

#: Environment variable naming a font file for the label text, the
#: equivalent of ``LabelLayout.font`` (read when a label is drawn).
FONT_ENV = "IDNODE_LABEL_FONT"

#: Time allowed for fc-list / fc-match: a cold fontconfig cache is rebuilt
#: on first use, which takes seconds on a slow disk; a hang must not.
FONTCONFIG_TIMEOUT_S = 20.0

#: Well-known font files of Debian packages, tried after fontconfig, best
#: first: fonts-noto-cjk, fonts-wqy-zenhei, fonts-wqy-microhei,
#: fonts-arphic-ukai; fonts-dejavu-core, fonts-liberation(2), fonts-noto-mono.
_KNOWN_FONTS: dict[str, tuple[str, ...]] = {
    "cjk": (
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
        "/usr/share/fonts/truetype/arphic/ukai.ttc",
    ),
    "mono": (
        "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
        "/usr/share/fonts/truetype/liberation2/LiberationMono-Regular.ttf",
        "/usr/share/fonts/truetype/noto/NotoMono-Regular.ttf",
    ),
}

#: How to get each kind of font, for error messages.
INSTALL_HINT = {
    "cjk": f"install fonts-noto-cjk or fonts-wqy-zenhei, or pass --font PATH (or set {FONT_ENV})",
    "mono": "install fonts-dejavu-core or fonts-liberation",
}

#: Characters a "cjk" font must draw, and the font file types Pillow loads.
_CJK_PROBE = "中文"
_FONT_SUFFIXES = (".ttf", ".ttc", ".otf", ".otc")
#: A code point no font maps, so it draws the font's "missing glyph" shape.
_NOT_A_CHARACTER = "\uffff"
#: Pixel size glyphs are compared at when checking coverage.
_PROBE_PX = 32

Face = tuple[str, int]  # font file, face index within it


class FontMissing(NodeError):
    """No font can draw the label's text; the message says what to install."""


@functools.cache
def find_font(kind: str) -> Path:
    """A font file of ``kind`` on this machine: ``"mono"`` (a monospaced
    face with Latin letters and digits) or ``"cjk"`` (a face drawing
    Chinese). fontconfig is asked first (``fc-match monospace``, ``fc-list
    :lang=zh``; its absence is tolerated), then well-known Debian paths; each
    candidate is loaded and checked for the glyphs. The answer is cached for
    the process; :data:`FONT_ENV` is not consulted here.

    Raises:
        InvalidValue: another ``kind``.
        FontMissing: no usable font of that kind.
    """
    if kind not in _KNOWN_FONTS:
        raise InvalidValue(f"font kind {kind!r} must be 'mono' or 'cjk'")
    tried = []
    for path in _candidates(kind):
        tried.append(path)
        if _usable(path, kind):
            return Path(path)
    what = "CJK-capable" if kind == "cjk" else "monospace"
    looked = ", ".join(tried) if tried else "fontconfig listed none and no well-known path exists"
    raise FontMissing(f"no {what} font found (tried: {looked}); {INSTALL_HINT[kind]}")


def _candidates(kind: str) -> list[str]:
    """Font files to try for ``kind``, best first, without repeats."""
    if kind == "mono":
        # the system's configured monospace face comes first
        listed = _fontconfig(["fc-match", "-f", "%{file}", "monospace"])
    else:
        # fc-list's order means nothing: known files first, then the rest by name
        found = _fontconfig(["fc-list", "-f", "%{file}\n", ":lang=zh"])
        known = [p for p in _KNOWN_FONTS[kind] if p in found]
        listed = known + sorted(set(found) - set(known))
    listed += [p for p in _KNOWN_FONTS[kind] if os.path.exists(p)]
    return [p for p in dict.fromkeys(listed) if p.lower().endswith(_FONT_SUFFIXES)]


def _fontconfig(argv: list[str]) -> list[str]:
    """File paths a fontconfig tool prints, or none if it is missing or fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=FONTCONFIG_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def _usable(path: str, kind: str) -> bool:
    try:
        face = text_face(path) if kind == "cjk" else (path, 0)
    except FontMissing:
        return False
    if kind == "cjk":
        return not missing_glyphs(face, _CJK_PROBE)
    font = load_font(face, _PROBE_PX)
    # a proportional font is no monospace face, whatever fontconfig falls back to
    return not missing_glyphs(face, "0AZ") and font.getlength("i") == font.getlength("W")


@functools.lru_cache(maxsize=64)
def face_names(path: str) -> tuple[str, ...]:
    """Family names of the faces in a font file (several in a .ttc).

    Raises:
        FontMissing: the file cannot be read as a font.
    """
    names = []
    while True:
        try:
            font = ImageFont.truetype(path, _PROBE_PX, index=len(names))
        except OSError as exc:
            if names:
                return tuple(names)  # past the last face of a collection
            raise FontMissing(f"font file {path} cannot be loaded ({exc}); {INSTALL_HINT['cjk']}") from None
        names.append(font.getname()[0] or "")


@functools.lru_cache(maxsize=64)
def text_face(path: str) -> Face:
    """The face of ``path`` for label lines: the Simplified Chinese one of
    a pan-CJK collection (its Han glyphs have the shapes Chinese readers
    expect), else the first that is not a monospaced variant."""
    names = face_names(path)
    plain = [i for i, name in enumerate(names) if "mono" not in name.lower()] or [0]
    chinese = [i for i in plain if names[i].endswith((" SC", " CN"))]
    return path, (chinese or plain)[0]


@functools.lru_cache(maxsize=64)
def mono_variant(face: Face) -> Face:
    """The monospaced face in the same file as ``face`` (Noto Sans Mono CJK,
    WenQuanYi Zen Hei Mono), or ``face`` itself when there is none."""
    names = face_names(face[0])
    wanted = names[face[1]].split()[-1]  # SC, or the family's last word
    monos = [i for i, name in enumerate(names) if "mono" in name.lower()]
    same_script = [i for i in monos if names[i].endswith(" " + wanted)]
    return (face[0], (same_script or monos)[0]) if monos else face


@functools.lru_cache(maxsize=256)
def load_font(face: Face, px: int) -> ImageFont.FreeTypeFont:
    """The face at ``px`` pixels an em. Basic layout: Chinese and Latin need
    no shaping, and it measures the same whether or not libraqm is present."""
    return ImageFont.truetype(face[0], px, index=face[1], layout_engine=ImageFont.Layout.BASIC)


def _glyph_signature(font: ImageFont.FreeTypeFont, ch: str) -> tuple[Any, ...]:
    image = Image.new("L", (2 * _PROBE_PX, 2 * _PROBE_PX), 0)
    ImageDraw.Draw(image).text((0, 0), ch, font=font, fill=255)
    return font.getbbox(ch), font.getlength(ch), image.tobytes()


@functools.lru_cache(maxsize=8192)
def has_glyph(face: Face, ch: str) -> bool:
    # Pillow cannot ask for a glyph index; a character the font lacks draws
    # the "missing glyph" shape, the same as a code point no font maps.
    if ch.isspace():
        return True
    font = load_font(face, _PROBE_PX)
    return _glyph_signature(font, ch) != _glyph_signature(font, _NOT_A_CHARACTER)


@functools.lru_cache(maxsize=4096)
def missing_glyphs(face: Face, text: str) -> str:
    """The distinct characters of ``text`` that ``face`` cannot draw."""
    return "".join(ch for ch in dict.fromkeys(text) if not has_glyph(face, ch))


def require_glyphs(face: Face, text: str) -> None:
    missing = missing_glyphs(face, text)
    if missing:
        name = face_names(face[0])[face[1]]
        raise FontMissing(
            f"font {face[0]} ({name}) has no glyphs for {missing!r} in {text!r}; {INSTALL_HINT['cjk']}"
        )
