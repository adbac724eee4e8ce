"""0x0801 multimedia uploads in progress, bounded over the whole gateway.

A photo arrives as up to 256 subpackages of ≤ 1023 bytes; packages may come twice or out of
order, and some may never come until a 0x8800 asks for them again (the terminal resends them
with their original serial and index). Memory stays bounded however terminals behave: at most
``max_pending`` uploads per connection and ``max_bytes`` over the gateway — beyond either the
oldest upload is dropped (the caller counts and logs it through ``on_drop``).

Packages of one upload are keyed like ``codec.Reassembler`` keys them: (package total, first
serial = serial − index + 1), per connection.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.codec import CodecError, Header

MAX_PACKAGES = 256  # what the codec's reassembly accepts; 256 × 1023 bytes ≈ 256 KiB a photo


@dataclass(eq=False)
class Upload:
    """One multimedia item being reassembled on one connection."""

    owner: object  # the connection's session
    total: int
    first_serial: int
    header: Header  # the newest package's header: whom to answer, in which protocol version
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0
    quiet_since: float = 0.0  # when the last new package arrived (or the last 0x8800 went)
    requests: int = 0  # 0x8800s the timer sent since the last new package
    media_id: int | None = None  # from package 1's first DWORD, once it arrived
    publishing: bool = False  # a publish of the complete item is under way

    @property
    def key(self) -> tuple[int, int]:
        return self.total, self.first_serial

    @property
    def complete(self) -> bool:
        return len(self.parts) == self.total

    def missing(self) -> list[int]:
        return [i for i in range(1, self.total + 1) if i not in self.parts]

    def body(self) -> bytes:
        return b"".join(self.parts[i] for i in range(1, self.total + 1))


def upload_key(header: Header) -> tuple[int, int]:
    total, index = header.package_total or 1, header.package_index or 1
    return total, (header.serial - index + 1) & 0xFFFF


class UploadBuffer:
    """Every connection's uploads in progress, oldest first, with the bytes they hold."""

    def __init__(self, max_pending: int, max_bytes: int,
                 on_drop: Callable[[Upload, str], None] = lambda upload, why: None) -> None:
        self.max_pending = max(1, max_pending)
        self.max_bytes = max_bytes
        self.on_drop = on_drop
        self._uploads: OrderedDict[tuple[object, int, int], Upload] = OrderedDict()
        self._count: dict[object, int] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._uploads)

    def get(self, owner: object, key: tuple[int, int]) -> Upload | None:
        return self._uploads.get((owner, *key))

    def add(self, owner: object, header: Header, body: bytes,
            now: float) -> tuple[Upload | None, bool]:
        """File one package: (its upload, whether the package was new). The upload is None
        when the memory bound dropped it right away (a single item larger than the bound)."""
        total, index = header.package_total or 1, header.package_index or 1
        if total > MAX_PACKAGES:
            raise CodecError(f"{total} packages exceed the limit of {MAX_PACKAGES}")
        key = upload_key(header)
        upload = self._uploads.get((owner, *key))
        if upload is None:
            if self._count.get(owner, 0) >= self.max_pending:
                oldest = next(u for u in self._uploads.values() if u.owner is owner)
                self.drop(oldest, f"more than {self.max_pending} uploads in progress on "
                                  "one connection")
            upload = Upload(owner, total, key[1], header, quiet_since=now)
            self._uploads[(owner, *key)] = upload
            self._count[owner] = self._count.get(owner, 0) + 1
        upload.header = header
        if index in upload.parts:
            return upload, False  # a duplicate: the first copy stays
        upload.parts[index] = body
        upload.size += len(body)
        self.bytes += len(body)
        upload.quiet_since, upload.requests = now, 0
        if index == 1 and len(body) >= 4:
            (upload.media_id,) = struct.unpack_from(">I", body, 0)
        while self.bytes > self.max_bytes and self._uploads:
            self.drop(next(iter(self._uploads.values())),
                      f"over {self.max_bytes} bytes in progress on the gateway")
        return (upload if (owner, *key) in self._uploads else None), True

    def finish(self, upload: Upload) -> None:
        """Forget an upload (published, or given up): its bytes are free again."""
        if self._uploads.pop((upload.owner, *upload.key), None) is upload:
            self.bytes -= upload.size
            left = self._count[upload.owner] - 1
            if left:
                self._count[upload.owner] = left
            else:
                del self._count[upload.owner]

    def drop(self, upload: Upload, why: str) -> None:
        self.finish(upload)
        self.on_drop(upload, why)

    def drop_owner(self, owner: object, why: str) -> None:
        for upload in [u for u in self._uploads.values() if u.owner is owner]:
            self.drop(upload, why)

    def quiet(self, now: float, after_s: float) -> list[Upload]:
        """Uploads nothing new arrived for in ``after_s`` (not those being published)."""
        return [u for u in self._uploads.values()
                if now - u.quiet_since >= after_s and not u.publishing]


__all__ = ["MAX_PACKAGES", "Upload", "UploadBuffer", "upload_key"]
