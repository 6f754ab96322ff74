"""File names from untrusted names: whatever a camera id or a source name is, the file stays in its folder.

A camera id comes from the wire (``..`` and ``.`` match its pattern ``[A-Za-z0-9._:-]+``) and a source
name from the command line, so neither may be joined to an output folder as it is: ``out / ".."`` is the
folder's parent. ``safe_component`` maps any name to one file-name component, injectively (two different
names never share a file) and readably (``cam-1`` stays ``cam-1``); ``safe_child`` joins it to the folder
and checks that the result is inside it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

MAX_COMPONENT = 200  # bytes: below every common file system's 255, with room for a suffix
_KEEP = re.compile(r"[A-Za-z0-9_.-]")  # everything else is %XX-escaped ('%' too, so escaping is injective)
_SUFFIX = re.compile(r"^(\.[A-Za-z0-9_-]+)*$")


def safe_component(name: str) -> str:
    """One safe file-name component for ``name``: unsafe characters as ``%XX`` (UTF-8 bytes), a leading
    dot escaped (so neither ``.`` nor ``..`` nor a hidden file comes out), long names cut and ended with a
    hash of the whole name (``~`` + 16 hex digits; ``~`` is otherwise always escaped)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a file name needs a non-empty string, got {name!r}")
    escaped = "".join(ch if _KEEP.fullmatch(ch) else "".join(f"%{b:02X}" for b in ch.encode()) for ch in name)
    if escaped.startswith("."):
        escaped = "%2E" + escaped[1:]
    if len(escaped) > MAX_COMPONENT:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        escaped = f"{escaped[: MAX_COMPONENT - 17]}~{digest}"
    return escaped


def safe_child(folder: str | Path, name: str, suffix: str = "") -> Path:
    """``folder / (safe_component(name) + suffix)``, refused (ValueError) should it resolve outside
    ``folder`` (a symlink planted in the folder). ``suffix`` is a fixed extension such as ``.webm``."""
    if not _SUFFIX.fullmatch(suffix):
        raise ValueError(f"suffix must look like '.ext', got {suffix!r}")
    root = Path(folder)
    child = root / f"{safe_component(name)}{suffix}"
    resolved_root = root.resolve()
    if child.resolve().parent != resolved_root:
        raise ValueError(f"{child} resolves outside {resolved_root}")
    return child
