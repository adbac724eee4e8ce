"""Appeal attachments: checked by their bytes, limited in size, stored by SHA-256.

The type is what the file's first bytes say (JPEG, PNG or PDF), not what the client
claims; a claim that disagrees is refused, so a script named photo.jpg is never stored.
Files are written to a temporary name first and moved to ``<dir>/<sha[:2]>/<sha>`` only
after the database has committed the appeal, so a refused request leaves no file behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, UploadFile

SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
              (b"%PDF-", "application/pdf"))
CHUNK = 65_536


@dataclass
class StagedFile:
    sha256: str
    size: int
    content_type: str
    filename: str
    temp: Path

    def row(self) -> tuple[str, int, str, str]:
        return self.sha256, self.size, self.content_type, self.filename


def sniff(head: bytes) -> str | None:
    return next((kind for magic, kind in SIGNATURES if head.startswith(magic)), None)


def stage(upload: UploadFile, directory: Path, max_bytes: int) -> StagedFile:
    """Copy one upload to a temporary file under ``directory``, hashing as it goes."""
    name = Path(upload.filename or "attachment").name[:200] or "attachment"
    (directory / "tmp").mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=directory / "tmp")
    temp = Path(temp_name)
    digest, size, head = hashlib.sha256(), 0, b""
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := upload.file.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise HTTPException(413, f"attachment {name!r} is larger than "
                                             f"{max_bytes:,} bytes")
                if len(head) < 16:
                    head += chunk[:16]
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise HTTPException(422, f"attachment {name!r} is empty")
        kind = sniff(head)
        if kind is None:
            raise HTTPException(415, f"attachment {name!r} is not a JPEG, PNG or PDF "
                                     "(judged by its content)")
        claimed = (upload.content_type or "").split(";")[0].strip().lower()
        if claimed not in ("", "application/octet-stream", kind):
            raise HTTPException(415, f"attachment {name!r} is sent as {claimed} but its "
                                     f"content is {kind}")
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return StagedFile(digest.hexdigest(), size, kind, name, temp)


def commit(staged: list[StagedFile], directory: Path) -> None:
    """Move staged files to their content address (an identical file is kept once)."""
    for f in staged:
        final = path_of(directory, f.sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            f.temp.unlink(missing_ok=True)
        else:
            os.replace(f.temp, final)


def discard(staged: list[StagedFile]) -> None:
    for f in staged:
        f.temp.unlink(missing_ok=True)


def path_of(directory: Path, sha256: str) -> Path:
    return directory / sha256[:2] / sha256
