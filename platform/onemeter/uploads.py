"""Files clerks upload (signed letters, scans): checked by content, stored per tenant.

The type is sniffed from the bytes (the `filetype` library), never from the file name or the
browser's mimetype: a text file renamed letter.pdf or an .exe is refused. Reading is bounded
(at most limit + 1 bytes), and a file is stored under its SHA-256,

    <ONEMETER_UPLOAD_DIR>/<tenant_id>/<sha256>.<ext>

written to a temporary file in the same folder and moved into place with os.replace, so a
reader never sees half a file. The database keeps only the relative key `<tenant_id>/<sha256>.
<ext>`; `resolve_key` turns a key back into a path and refuses anything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import filetype
from flask import current_app

#: Default size limit of one upload (ONEMETER_UPLOAD_MAX_BYTES overrides it).
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
#: Kinds accepted for a signed letter (承诺书): extension → mimetype served back.
LETTER_KINDS: dict[str, str] = {"pdf": "application/pdf", "jpg": "image/jpeg",
                                "png": "image/png"}
_KIND_NAMES = {"pdf": "PDF", "jpg": "JPG", "png": "PNG"}
#: Bytes the sniffer looks at (filetype reads at most 8192).
_HEAD = 8192
_CHUNK = 64 * 1024
#: A stored key, exactly: tenant id (no sign, no leading zero) / 64 lowercase hex . ext.
_KEY = re.compile(r"([1-9][0-9]*)/([0-9a-f]{64})\.(pdf|jpg|png)")


class UploadRefused(ValueError):
    """An upload that is not stored; the message says why, in Chinese, for the clerk."""


@dataclass(frozen=True)
class StoredFile:
    """One stored upload: its key for the database and what it is."""

    key: str
    kind: str
    mimetype: str
    size: int
    sha256: str
    path: Path


def max_bytes() -> int:
    """The size limit of one upload, from ONEMETER_UPLOAD_MAX_BYTES (default 10 MiB)."""
    return int(current_app.config.get("ONEMETER_UPLOAD_MAX_BYTES", DEFAULT_MAX_BYTES))


def upload_root() -> Path:
    """The folder uploads live under: ONEMETER_UPLOAD_DIR, else <ONEMETER_VAR_DIR>/uploads."""
    configured = current_app.config.get("ONEMETER_UPLOAD_DIR")
    if configured:
        return Path(configured)
    var_dir = current_app.config.get("ONEMETER_VAR_DIR") or os.environ.get("ONEMETER_VAR_DIR")
    if not var_dir:
        raise RuntimeError("ONEMETER_UPLOAD_DIR and ONEMETER_VAR_DIR are both unset")
    return Path(var_dir) / "uploads"


def limit_text(size: int | None = None) -> str:
    """The limit (default: the configured one) for people: 10 MB; 0.5 MB（524,288 字节）."""
    size = max_bytes() if size is None else size
    value = size / (1024 * 1024)
    if value >= 1 and value == int(value):
        return f"{int(value)} MB"
    return f"{value:.3g} MB（{size:,} 字节）"


def _kinds_text(kinds: dict[str, str]) -> str:
    return "、".join(_KIND_NAMES.get(k, k.upper()) for k in kinds)


def _read(stream: BinaryIO, size: int) -> bytes:
    try:
        data = stream.read(size)
    except (OSError, ValueError) as exc:  # a closed or broken stream
        raise UploadRefused("无法读取上传的文件，请重新选择文件后上传") from exc
    if data is None:
        data = b""
    if not isinstance(data, bytes | bytearray):
        raise UploadRefused("无法读取上传的文件，请重新选择文件后上传")
    return bytes(data)


def sniff(head: bytes, kinds: dict[str, str] = LETTER_KINDS) -> str:
    """The kind (extension) of a file from its first bytes; refused if not one of `kinds`."""
    guess = filetype.guess(head)
    kind = guess.extension if guess is not None else None
    if kind not in kinds:
        raise UploadRefused(f"文件类型不符：只接受 {_kinds_text(kinds)} 格式的文件"
                            "（按文件内容识别，改文件扩展名无效）")
    return kind


def store_upload(stream: BinaryIO, tenant_id: int, kinds: dict[str, str] = LETTER_KINDS,
                 limit: int | None = None) -> StoredFile:
    """Store the file read from `stream` for `tenant_id`; raise UploadRefused if not allowed.

    Nothing is left on disk when a file is refused: the type is checked on the first bytes
    before anything is written, and a file found too large is removed before raising.
    """
    if not isinstance(tenant_id, int) or isinstance(tenant_id, bool) or tenant_id <= 0:
        raise ValueError(f"invalid tenant id {tenant_id!r}")
    limit = max_bytes() if limit is None else limit
    too_large = UploadRefused(f"文件过大：不能超过 {limit_text(limit)}")

    head = b""
    while len(head) < min(_HEAD, limit + 1):
        chunk = _read(stream, min(_HEAD, limit + 1) - len(head))
        if not chunk:
            break
        head += chunk
    if not head:
        raise UploadRefused("文件为空：请选择签字后的书面承诺书扫描件或照片")
    if len(head) > limit:
        raise too_large
    kind = sniff(head, kinds)

    folder = upload_root() / str(tenant_id)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(head)
    size = len(head)
    fd, temp_name = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=folder)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            while size <= limit:
                chunk = _read(stream, min(_CHUNK, limit + 1 - size))
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise too_large
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        key = f"{tenant_id}/{sha}.{kind}"
        final = folder / f"{sha}.{kind}"
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    return StoredFile(key=key, kind=kind, mimetype=kinds[kind], size=size, sha256=sha,
                      path=final)


def parse_key(key: object) -> tuple[int, str, str]:
    """(tenant id, sha256, kind) of a stored key; UploadRefused for anything else."""
    match = _KEY.fullmatch(key) if isinstance(key, str) else None
    if match is None:
        raise UploadRefused("附件路径无效")
    return int(match.group(1)), match.group(2), match.group(3)


def resolve_key(key: object, tenant_id: int) -> Path:
    """The path of stored `key`, which must belong to `tenant_id` (the row's tenant).

    Refuses (UploadRefused) anything that is not exactly `<int>/<64 hex>.<ext>` — `../`,
    absolute paths, other separators — and a key of another tenant. The file may not exist.
    """
    owner, sha, kind = parse_key(key)
    if owner != tenant_id:
        raise UploadRefused("附件不属于该办事处")
    root = upload_root().resolve()
    path = (root / str(owner) / f"{sha}.{kind}").resolve()
    if not path.is_relative_to(root):  # a symlinked tenant folder pointing elsewhere
        raise UploadRefused("附件路径无效")
    return path


def mimetype_of(key: object) -> str:
    """The mimetype a stored key is served with (from its sniffed kind)."""
    return LETTER_KINDS[parse_key(key)[2]]
