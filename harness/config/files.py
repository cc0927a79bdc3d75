"""Files a user names (``--config``, sweep files, ``--from`` and resume checkpoints): each is checked
before it is used, so an empty, truncated, binary or unreadable file, or a directory, is a one-line
UserError naming it, never a traceback from the library that would have read it."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from harness.errors import UserError


def check_file(path: str | Path, what: str) -> Path:
    """``path`` as an existing, readable, non-empty regular file."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} {path} is a directory, not a file")
    if not p.exists():
        raise UserError(f"{what} {path} does not exist")
    if not os.access(p, os.R_OK):
        raise UserError(f"{what} {path}: cannot be read (permission denied)")
    if p.stat().st_size == 0:
        raise UserError(f"{what} {path} is empty")
    return p


def read_text(path: str | Path, what: str) -> str:
    """A text file the user named (YAML), or a UserError saying why it is not one."""
    p = check_file(path, what)
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise UserError(f"{what} {path}: not a text file (binary content)") from None
    except OSError as err:
        raise UserError(f"{what} {path}: cannot be read ({err.strerror})") from None
    if "\x00" in text:
        raise UserError(f"{what} {path}: not a text file (binary content)")
    if not text.strip():
        raise UserError(f"{what} {path} is empty")
    return text


def check_checkpoint(path: str | Path, what: str) -> Path:
    """A torch checkpoint (a zip archive since torch 1.6): a truncated copy has no central directory."""
    p = check_file(path, what)
    try:
        with zipfile.ZipFile(p) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise UserError(f"{what} {path}: truncated or not a torch checkpoint ({err})") from None
    if bad is not None:
        raise UserError(f"{what} {path}: corrupt (member {bad} fails its CRC check)")
    return p
