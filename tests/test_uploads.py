"""不愿参与承诺书 (opt-out letters) on the real database and real files: type by content,
size limit, nothing written on a refusal, served back byte-identical only to who may see the
household, and stored keys that cannot point outside the tenant's upload folder."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from onemeter.database import db
from onemeter.registry.models import Community, Household
from onemeter.tenancy import TenantScope, use_scope
from onemeter.uploads import UploadRefused, resolve_key, store_upload
from tests.support.factory import make_row
from tests.support.matrix import snapshot
from tests.support.stack import PASSWORD

TYPE_REFUSED = "文件类型不符：只接受 PDF、JPG、PNG 格式的文件"


# --- real files, built byte by byte ------------------------------------------------------------

def make_pdf(text: str | None = None) -> bytes:
    """A small, well-formed one-page PDF (correct xref offsets), unique per call."""
    text = text or f"Opt-out letter {uuid.uuid4().hex}"
    content = f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def make_png(width: int = 3, height: int = 2) -> bytes:
    """A valid RGB PNG (IHDR, tEXt with a unique marker, IDAT, IEND)."""
    rows = b"".join(b"\x00" + b"".join(bytes((x * 80 % 256, y * 120 % 256, 200))
                                       for x in range(width)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _png_chunk(b"tEXt", b"Comment\x00" + uuid.uuid4().hex.encode())
            + _png_chunk(b"IDAT", zlib.compress(rows))
            + _png_chunk(b"IEND", b""))


def test_built_files_are_what_they_claim() -> None:
    pdf = make_pdf("check")
    xref = int(re.search(rb"startxref\n(\d+)", pdf).group(1))
    assert pdf.startswith(b"%PDF-1.4") and pdf[xref:xref + 4] == b"xref"
    for number, offset in enumerate(re.findall(rb"(\d{10}) 00000 n", pdf), start=1):
        assert pdf[int(offset):].startswith(b"%d 0 obj" % number)
    png = make_png(3, 2)
    chunks, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        tag, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])[0] == \
            zlib.crc32(tag + data) & 0xFFFFFFFF
        chunks.append((tag, data))
        pos += 12 + length
    assert [t for t, _ in chunks] == [b"IHDR", b"tEXt", b"IDAT", b"IEND"]
    assert len(zlib.decompress(chunks[2][1])) == 2 * (1 + 3 * 3)


# --- helpers -----------------------------------------------------------------------------------

def new_household(app: Flask, tenant_id: int, **fields: Any) -> int:
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        community = make_row(db.session, Community, tenant_id, "承诺书测试")
        household = Household(tenant_id=tenant_id, community_id=community.id, building="1",
                              unit="1", room=uuid.uuid4().hex[:8], **fields)
        db.session.add(household)
        db.session.commit()
        return household.id


def stored_files(app: Flask) -> set[Path]:
    """Every file under the upload folder (temporary ones included)."""
    root = Path(app.config["ONEMETER_UPLOAD_DIR"])
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()} if root.exists() \
        else set()


def upload(client: Any, pk: int, body: bytes, filename: str = "承诺书.pdf",
           mimetype: str = "application/pdf", **form: str) -> Any:
    data: dict[str, Any] = {"letter": (io.BytesIO(body), filename, mimetype), **form}
    return client.post(f"/registry/households/optout/{pk}", data=data,
                       content_type="multipart/form-data", follow_redirects=True)


def page(response: Any) -> str:
    return response.get_data(as_text=True)


# --- accepted and served ---------------------------------------------------------------------

def test_pdf_letter_is_stored_by_content_hash_and_served_back_identical_to_the_tenant(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    t = tenant_ids["pingqiao"]
    pk = new_household(app, t)
    staff = login("pingqiao_staff")
    show = page(staff.get(f"/registry/households/show/{pk}"))
    assert "未上传" in show and 'enctype="multipart/form-data"' in show
    assert 'name="csrf_token"' in show and f'action="/registry/households/optout/{pk}"' in show

    pdf = make_pdf()
    response = upload(staff, pk, pdf, reason="已自行安装分表，不愿参与改造")
    assert response.status_code == 200
    assert "已上传书面承诺书，该户已登记为自愿不改造" in page(response)

    sha = hashlib.sha256(pdf).hexdigest()
    row = snapshot(app, Household, pk)
    assert row["opted_out"] is True and row["opted_out_at"] is not None
    assert row["optout_reason"] == "已自行安装分表，不愿参与改造"
    assert row["optout_letter"] == f"{t}/{sha}.pdf"
    on_disk = Path(app.config["ONEMETER_UPLOAD_DIR"]) / str(t) / f"{sha}.pdf"
    assert on_disk.read_bytes() == pdf
    assert not [p for p in on_disk.parent.iterdir() if p.name.endswith(".part")]

    for username in ("pingqiao_staff", "pingqiao_admin"):
        letter = login(username).get(f"/registry/households/letter/{pk}")
        assert letter.status_code == 200 and letter.data == pdf
        assert letter.mimetype == "application/pdf"
        assert letter.headers["Content-Disposition"].startswith("inline")
        assert letter.headers["X-Content-Type-Options"] == "nosniff"
        assert "no-store" in letter.headers["Cache-Control"]

    show = page(staff.get(f"/registry/households/show/{pk}"))
    assert "已上传" in show and f'href="/registry/households/letter/{pk}"' in show


def test_type_comes_from_the_content_not_the_name_or_the_browser(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    t = tenant_ids["pingqiao"]
    pk = new_household(app, t, optout_reason="原因保留")
    staff = login("pingqiao_admin")
    png = make_png()
    # A photo of the letter, named .pdf and sent as a PDF by the browser: it is a PNG.
    response = upload(staff, pk, png, filename="letter.pdf", mimetype="application/pdf")
    assert "已上传书面承诺书" in page(response)
    row = snapshot(app, Household, pk)
    assert row["optout_letter"] == f"{t}/{hashlib.sha256(png).hexdigest()}.png"
    assert row["optout_reason"] == "原因保留"  # no reason given: the recorded one stays
    letter = staff.get(f"/registry/households/letter/{pk}")
    assert letter.status_code == 200 and letter.data == png and letter.mimetype == "image/png"


# --- refusals: a message in Chinese, no file, no change ----------------------------------------

@pytest.mark.parametrize(("body", "filename", "mimetype", "message"), [
    (b"This is not a PDF, only text.\n" * 20, "letter.pdf", "application/pdf", TYPE_REFUSED),
    (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 200,
     "letter.exe", "application/octet-stream", TYPE_REFUSED),
    (b"<html><script>alert(1)</script></html>", "letter.png", "image/png", TYPE_REFUSED),
    (b"", "letter.pdf", "application/pdf", "文件为空"),
], ids=["text-named-pdf", "exe", "html-named-png", "empty"])
def test_refused_upload_says_why_writes_nothing_and_changes_nothing(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int], body: bytes,
        filename: str, mimetype: str, message: str) -> None:
    pk = new_household(app, tenant_ids["pingqiao"])
    before, files = snapshot(app, Household, pk), stored_files(app)
    response = upload(login("pingqiao_staff"), pk, body, filename, mimetype, reason="不愿改造")
    assert response.status_code == 200
    assert f"书面承诺书未上传：{message}" in page(response)
    assert "已上传书面承诺书" not in page(response)
    assert stored_files(app) == files
    assert snapshot(app, Household, pk) == before
    assert before["opted_out"] is False and before["optout_letter"] is None


def test_a_post_without_a_file_is_refused(app: Flask, login: Callable[..., Any],
                                           tenant_ids: dict[str, int]) -> None:
    pk = new_household(app, tenant_ids["pingqiao"])
    before = snapshot(app, Household, pk)
    response = login("pingqiao_staff").post(f"/registry/households/optout/{pk}",
                                            data={"reason": "无附件"}, follow_redirects=True)
    assert "请选择要上传的书面承诺书" in page(response)
    assert snapshot(app, Household, pk) == before


def test_size_limit_from_config_exact_size_passes_one_byte_more_is_refused(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    t = tenant_ids["pingqiao"]
    # Longer than the bytes the type is sniffed from: the limit holds while streaming too.
    pdf = make_pdf(f"{uuid.uuid4().hex} " * 400)
    assert len(pdf) > 8192
    monkeypatch.setitem(app.config, "ONEMETER_UPLOAD_MAX_BYTES", len(pdf))
    staff = login("pingqiao_staff")

    pk = new_household(app, t)
    before, files = snapshot(app, Household, pk), stored_files(app)
    bigger = pdf + b"%" + b"x" * 100_000  # still a PDF, over the limit
    response = upload(staff, pk, bigger)
    assert f"文件过大：不能超过 {len(pdf) / 1048576:.3g} MB（{len(pdf):,} 字节）" in page(response)
    assert stored_files(app) == files and snapshot(app, Household, pk) == before
    response = upload(staff, pk, pdf + b"\n")  # one byte over, found after the first bytes
    assert "文件过大" in page(response)
    assert stored_files(app) == files and snapshot(app, Household, pk) == before

    response = upload(staff, pk, pdf)  # exactly the limit
    assert "已上传书面承诺书" in page(response)
    assert staff.get(f"/registry/households/letter/{pk}").data == pdf

    monkeypatch.setitem(app.config, "ONEMETER_UPLOAD_MAX_BYTES", 2 * 1024 * 1024)
    assert "单个文件不超过 2 MB" in page(staff.get(f"/registry/households/show/{pk}"))


def test_default_limit_is_ten_megabytes_and_reading_is_bounded(
        app: Flask, tenant_ids: dict[str, int]) -> None:

    class CountingStream(io.BytesIO):
        """A real stream that remembers how many bytes were read from it."""

        consumed = 0

        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            self.consumed += len(data)
            return data

    t = tenant_ids["pingqiao"]
    big = b"%PDF-1.4\n" + b"0" * (10 * 1024 * 1024)  # 10 MiB + 9 bytes
    with app.test_request_context():
        assert "ONEMETER_UPLOAD_MAX_BYTES" not in app.config
        files = stored_files(app)
        stream = CountingStream(big)
        with pytest.raises(UploadRefused, match="文件过大：不能超过 10 MB"):
            store_upload(stream, t)
        assert stream.consumed == 10 * 1024 * 1024 + 1
        stream = CountingStream(big)
        with pytest.raises(UploadRefused, match="文件过大"):
            store_upload(stream, t, limit=1000)
        assert stream.consumed == 1001
        assert stored_files(app) == files


def test_unreadable_stream_is_refused_in_chinese(app: Flask, tenant_ids: dict[str, int]
                                                 ) -> None:
    stream = io.BytesIO(make_pdf())
    stream.close()
    with app.test_request_context(), pytest.raises(UploadRefused, match="无法读取上传的文件"):
        store_upload(stream, tenant_ids["pingqiao"])


# --- other tenants, read-only roles, roles without households ---------------------------------

def _uploaded(app: Flask, login: Callable[..., Any], tenant_id: int, body: bytes) -> int:
    pk = new_household(app, tenant_id)
    assert "已上传书面承诺书" in page(upload(login("pingqiao_staff"), pk, body))
    return pk


def test_another_sub_district_gets_404_for_the_letter_and_cannot_upload(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    pdf = make_pdf()
    pk = _uploaded(app, login, tenant_ids["pingqiao"], pdf)
    before, files = snapshot(app, Household, pk), stored_files(app)
    for username in ("pingxi_admin", "pingxi_staff"):
        other = login(username)
        letter = other.get(f"/registry/households/letter/{pk}")
        assert letter.status_code == 404 and pdf not in letter.data
        assert other.get(f"/registry/households/show/{pk}").status_code == 404
        response = other.post(f"/registry/households/optout/{pk}", data={
            "letter": (io.BytesIO(make_png()), "x.png"), "reason": "覆盖"},
            content_type="multipart/form-data")
        assert response.status_code == 404
    assert snapshot(app, Household, pk) == before and stored_files(app) == files


def test_district_viewer_reads_the_letter_but_cannot_upload(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    pdf = make_pdf()
    pk = _uploaded(app, login, tenant_ids["pingqiao"], pdf)
    before, files = snapshot(app, Household, pk), stored_files(app)
    district = login("district")
    letter = district.get(f"/registry/households/letter/{pk}")
    assert letter.status_code == 200 and letter.data == pdf
    show = page(district.get(f"/registry/households/show/{pk}"))
    assert f'href="/registry/households/letter/{pk}"' in show
    assert 'name="letter"' not in show and "/optout/" not in show
    response = district.post(f"/registry/households/optout/{pk}", data={
        "letter": (io.BytesIO(make_png()), "x.png"), "reason": "覆盖"},
        content_type="multipart/form-data")
    assert response.status_code in (302, 403)
    assert snapshot(app, Household, pk) == before and stored_files(app) == files


@pytest.mark.parametrize("username", ["water", "power", "finance", "orphan"])
def test_roles_that_cannot_see_households_cannot_open_their_letters(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int], username: str
        ) -> None:
    pdf = make_pdf()
    pk = _uploaded(app, login, tenant_ids["pingqiao"], pdf)
    before = snapshot(app, Household, pk)
    client = login(username)
    if username != "orphan":  # a tenant role with no tenant lists households, and sees none
        assert client.get("/registry/households/list/").status_code in (302, 403)
    letter = client.get(f"/registry/households/letter/{pk}")
    assert letter.status_code in (302, 403, 404) and pdf not in letter.data
    response = client.post(f"/registry/households/optout/{pk}", data={
        "letter": (io.BytesIO(make_png()), "x.png")}, content_type="multipart/form-data")
    assert response.status_code in (302, 403, 404)
    assert snapshot(app, Household, pk) == before


# --- stored keys -------------------------------------------------------------------------------

def test_resolver_accepts_only_a_key_of_the_rows_tenant(app: Flask,
                                                        tenant_ids: dict[str, int]) -> None:
    t, other = tenant_ids["pingqiao"], tenant_ids["pingxi"]
    sha = hashlib.sha256(b"x").hexdigest()
    with app.app_context():
        root = Path(app.config["ONEMETER_UPLOAD_DIR"]).resolve()
        assert resolve_key(f"{t}/{sha}.pdf", t) == root / str(t) / f"{sha}.pdf"
        bad = [f"../{t}/{sha}.pdf", f"{t}/../{other}/{sha}.pdf", f"{t}/../../etc/passwd",
               f"/{t}/{sha}.pdf", f"{t}/{sha}.pdf/..", f"{t}\\{sha}.pdf", f"{t}/{sha}.PDF",
               f"{t}/{sha}.pdf\n", f"{t}/{sha}.exe", f"{t}/{sha[:-1]}.pdf",
               f"{t}/{sha.upper()}.pdf", f"0{t}/{sha}.pdf", f"-{t}/{sha}.pdf", f"{t}/./{sha}.pdf",
               "/etc/passwd", "", None, 42]
        for key in bad:
            with pytest.raises(UploadRefused):
                resolve_key(key, t)
        with pytest.raises(UploadRefused, match="不属于该办事处"):
            resolve_key(f"{other}/{sha}.pdf", t)


def test_a_tampered_key_in_the_database_is_never_served(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    t, other = tenant_ids["pingqiao"], tenant_ids["pingxi"]
    # Another tenant's real letter, and a household whose key points at it (or outside).
    their_pdf = make_pdf()
    their_pk = new_household(app, other)
    assert "已上传" in page(upload(login("pingxi_staff"), their_pk, their_pdf))
    their_key = snapshot(app, Household, their_pk)["optout_letter"]
    secret = Path(app.config["ONEMETER_UPLOAD_DIR"]).parent / "secret_key.txt"
    secret.write_bytes(b"%PDF-1.4 secret")
    sha = their_key.split("/")[1].split(".")[0]
    for key in (their_key, f"{t}/../{other}/{sha}.pdf", "../secret_key.txt", str(secret)):
        pk = new_household(app, t, opted_out=True, optout_letter=key)
        response = login("pingqiao_staff").get(f"/registry/households/letter/{pk}")
        assert response.status_code == 404, key
        assert their_pdf not in response.data and b"secret" not in response.data
    # A household with no letter, or a key whose file is gone: 404 too.
    assert login("pingqiao_staff").get(
        f"/registry/households/letter/{new_household(app, t)}").status_code == 404
    gone = new_household(app, t, optout_letter=f"{t}/{'0' * 64}.pdf")
    assert login("pingqiao_staff").get(f"/registry/households/letter/{gone}").status_code == 404


# --- CSRF ----------------------------------------------------------------------------------

def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def test_upload_form_carries_a_working_csrf_token_and_a_post_without_it_is_refused(
        make_app: Callable[..., Flask], app: Flask, tenant_ids: dict[str, int]) -> None:
    guarded = make_app(WTF_CSRF_ENABLED=True)
    pk = new_household(app, tenant_ids["pingqiao"])
    client = guarded.test_client()
    token = _csrf(page(client.get("/login/")))
    assert client.post("/login/", data={"username": "pingqiao_staff", "password": PASSWORD,
                                        "csrf_token": token}).status_code == 302
    before = snapshot(app, Household, pk)
    refused = client.post(f"/registry/households/optout/{pk}", data={
        "letter": (io.BytesIO(make_pdf()), "a.pdf")}, content_type="multipart/form-data")
    assert refused.status_code == 400 and snapshot(app, Household, pk) == before

    token = _csrf(page(client.get(f"/registry/households/show/{pk}")))
    pdf = make_pdf()
    response = client.post(f"/registry/households/optout/{pk}", data={
        "letter": (io.BytesIO(pdf), "a.pdf"), "csrf_token": token},
        content_type="multipart/form-data", follow_redirects=True)
    assert "已上传书面承诺书" in page(response)
    assert client.get(f"/registry/households/letter/{pk}").data == pdf


@pytest.mark.postgres
def test_row_level_security_alone_keeps_letters_apart(
        make_app: Callable[..., Flask], app: Flask, login: Callable[..., Any],
        tenant_ids: dict[str, int]) -> None:
    """The ORM read filter and write guard off: PostgreSQL RLS alone still hides the row."""
    bare = make_app(ONEMETER_ORM_ISOLATION=False)
    pdf = make_pdf()
    pk = _uploaded(app, login, tenant_ids["pingqiao"], pdf)
    before, files = snapshot(app, Household, pk), stored_files(app)
    other = login("pingxi_admin", application=bare)
    letter = other.get(f"/registry/households/letter/{pk}")
    assert letter.status_code == 404 and pdf not in letter.data
    response = other.post(f"/registry/households/optout/{pk}", data={
        "letter": (io.BytesIO(make_png()), "x.png")}, content_type="multipart/form-data")
    assert response.status_code == 404
    assert snapshot(app, Household, pk) == before and stored_files(app) == files
    assert login("pingqiao_staff", application=bare).get(
        f"/registry/households/letter/{pk}").data == pdf
