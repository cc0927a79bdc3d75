"""Fetch a dataset archive, check its MD5, and unpack it atomically into the data root."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Archive:
    """A .tar.gz at `url` with checksum `md5`, holding one top-level directory `folder`."""

    url: str
    md5: str
    folder: str


def fetch(archive: Archive, root: Path, timeout: float = 60.0) -> None:
    """Make `root/archive.folder` exist. Everything happens in a temporary directory inside `root`
    and the folder is renamed into place last, so a failure (network, checksum, unsafe member)
    leaves nothing behind and a concurrent reader never sees a half-unpacked folder."""
    target = root / archive.folder
    if target.exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        tarball = work / "archive.tar.gz"
        log.info("downloading %s to %s", archive.url, root)
        digest = _download(archive.url, tarball, timeout)
        if digest != archive.md5:
            raise DataError(f"{archive.url}: MD5 {digest}, expected {archive.md5}; nothing was unpacked")
        unpacked = work / "unpacked"
        _unpack(tarball, unpacked, archive)
        if not (unpacked / archive.folder).is_dir():
            raise DataError(f"{archive.url}: the archive has no {archive.folder}/ folder")
        try:
            os.rename(unpacked / archive.folder, target)
        except OSError:
            if not target.is_dir():  # a concurrent process may have just put it there
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _download(url: str, dest: Path, timeout: float) -> str:
    md5 = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            while chunk := response.read(1 << 20):
                md5.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as err:
        raise DataError(f"{url}: download failed ({err})") from None
    return md5.hexdigest()


def _unpack(tarball: Path, dest: Path, archive: Archive) -> None:
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar.getmembers():
                parts = PurePosixPath(member.name).parts
                if member.name.startswith(("/", "\\")) or ".." in parts or parts[:1] != (archive.folder,):
                    raise DataError(
                        f"{archive.url}: unsafe or unexpected archive member {member.name!r}; "
                        f"accepted are relative paths under {archive.folder}/"
                    )
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as err:
        raise DataError(f"{archive.url}: cannot unpack ({err})") from None
