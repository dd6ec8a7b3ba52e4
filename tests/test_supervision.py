"""督办: supervision notices answered by the sub-district they are addressed to and reached by
no other one, action items of the office's records, and both on the overdue list and in the
ranking until answered or closed; bad input refused in words, writing nothing."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from onemeter.database import db
from onemeter.district import service
from onemeter.district.models import ActionItem, DistrictRecord, SupervisionNotice, beijing_today
from onemeter.district.service import Figures
from onemeter.registry.models import Community
from onemeter.retrofit.models import RetrofitProject
from onemeter.tenancy import TenantScope, TenantViolation, use_scope
from tests.support.stack import TEST_DB

REFUSED = (302, 403)


def issue(district: Any, tenant_id: int | None = None, unit: str = "", **fields: str
          ) -> tuple[str, Any]:
    """The district office issues a notice through its page; returns (number, response)."""
    number = fields.pop("number", f"平督办〔2026〕{uuid.uuid4().hex[:6]}号")
    form = {"number": number, "issued_on": "2021-08-02", "issuer": "inspectorate",
            "subject": f"督办{number}", "content": "9月底前完成摸底并书面报告",
            "reply_due": "2021-08-16", "unit": unit, **fields}
    if tenant_id is not None:
        form["tenant"] = str(tenant_id)
    return number, district.post("/district/notices/add", data=form, follow_redirects=True)


def notice(app: Flask, number: str) -> SupervisionNotice | None:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        found = db.session.query(SupervisionNotice).filter_by(number=number).one_or_none()
        if found is not None:
            db.session.expunge(found)
        db.session.remove()
        return found


def ranking_row(page: str, tenant_name: str) -> tuple[Decimal, int, Figures]:
    """(score, overdue items, the figures the score is computed from) of a sub-district on
    the ranking page."""
    row = page.split(f">{tenant_name}</a>")[1].split("</tr>")[0]
    cells = [c.replace(",", "") for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
    score = re.search(r"<strong>([\d.]+)</strong>", row).group(1)
    done, denominator = (int(x) for x in re.search(r"（(\d+)/(\d+)）", cells[1]).groups())
    accepted, projects = (int(x) for x in re.search(r"（(\d+)/(\d+)）", cells[2]).groups())
    figures = Figures(communities=projects, accepted=accepted, households=denominator,
                      installed=done)
    return Decimal(score), int(cells[3]), figures


def test_a_notice_to_a_sub_district_is_seen_and_answered_by_it_and_reached_by_no_other(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    district = login("district")
    number, response = issue(district, tenant_ids["pingqiao"])
    assert response.status_code == 200
    created = notice(app, number)
    assert created is not None and created.tenant_id == tenant_ids["pingqiao"]
    assert created.issued_by == "district" and created.replied_on is None
    listing = district.get("/district/notices/list/").get_data(as_text=True)
    assert number in listing and "2021年8月16日" in listing and "逾期未答复" in listing

    mine = login("pingqiao_staff")
    page = mine.get("/supervision/notices/list/").get_data(as_text=True)
    assert number in page and "逾期未答复" in page
    form = mine.get(f"/supervision/notices/edit/{created.id}").get_data(as_text=True)
    assert "9月底前完成摸底并书面报告" in form  # the reply page shows what it answers

    other = login("pingxi_admin")
    assert number not in other.get("/supervision/notices/list/").get_data(as_text=True)
    assert number not in other.get(
        f"/supervision/notices/list/?_flt_0_number={number}").get_data(as_text=True)
    for url in (f"/supervision/notices/show/{created.id}",
                f"/supervision/notices/edit/{created.id}"):
        assert other.get(url).status_code == 404, url
    answer = other.post(f"/supervision/notices/edit/{created.id}",
                        data={"reply": "平西越俎代庖"})
    assert answer.status_code == 404
    assert notice(app, number).reply is None
    for url in ("/district/notices/list/", f"/district/notices/show/{created.id}",
                "/district/actions/list/"):
        assert other.get(url).status_code in REFUSED, url
    # No REST API carries notices: nothing under /api/v1 names them.
    spec = district.get("/api/v1/_openapi").get_data(as_text=True)
    assert "SupervisionNotice" not in spec and "supervision" not in spec.lower()

    mine.post(f"/supervision/notices/edit/{created.id}", data={"reply": "已完成摸底，报告已报送"},
              follow_redirects=True)
    answered = notice(app, number)
    assert answered.reply == "已完成摸底，报告已报送"
    assert answered.replied_on == beijing_today() and answered.replied_by == "pingqiao_staff"
    # Answered after 16 August 2021: kept, and marked.
    assert "逾期答复" in district.get(f"/district/notices/show/{created.id}").get_data(
        as_text=True)
    # A correction keeps the day of the first reply.
    login("pingqiao_admin").post(f"/supervision/notices/edit/{created.id}",
                                 data={"reply": "已完成摸底，\n报告已报送（附件补正）"})
    corrected = notice(app, number)
    assert corrected.reply.endswith("（附件补正）") and corrected.replied_by == "pingqiao_staff"
    # The office corrects its notice; its form sends the reply back as shown (CR LF): kept.
    district.post(f"/district/notices/edit/{created.id}", data={
        "number": number, "issued_on": "2021-08-02", "issuer": "inspectorate",
        "subject": "督办摸底（更正）", "content": "9月底前完成摸底并书面报告",
        "reply_due": "2021-08-16", "reply": "已完成摸底，\r\n报告已报送（附件补正）",
        "replied_on": answered.replied_on.isoformat()})
    kept = notice(app, number)
    assert kept.subject == "督办摸底（更正）" and kept.reply == corrected.reply
    assert kept.replied_by == "pingqiao_staff"


def test_an_unanswered_notice_is_overdue_and_lowers_the_score_until_answered(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    tenant = tenant_ids["pingdong"]
    with app.app_context(), use_scope(TenantScope.tenant(tenant), db.session):
        # A project of the 2022 phase (delivered 2013), so the sub-district has a score.
        community = Community(tenant_id=tenant, name=f"督办{uuid.uuid4().hex[:6]}",
                              delivery_date=dt.date(2013, 1, 1))
        db.session.add(RetrofitProject(tenant_id=tenant, community=community, utility="water"))
        db.session.commit()
    district = login("district")
    as_of = "?as_of=2021-09-01"
    before = ranking_row(district.get(f"/district/ranking/{as_of}").get_data(as_text=True),
                         "平东办事处")
    number, _ = issue(district, tenant, subject="督办未答复的测试通知")
    created = notice(app, number)

    overdue = district.get(f"/district/overdue/{as_of}").get_data(as_text=True)
    row = overdue.split("督办未答复的测试通知")[0].rsplit("<tr", 1)[1]
    assert "督办未答复" in row and "平东办事处" in row and number in row
    assert "2021年8月16日" in overdue.split("督办未答复的测试通知")[1].split("</tr>")[0]
    after = ranking_row(district.get(f"/district/ranking/{as_of}").get_data(as_text=True),
                        "平东办事处")
    # One more overdue item, and the score is the formula's with it (lower, unless the
    # sub-district's share of overdue items was already full).
    assert after[1] == before[1] + 1 and after[2] == before[2]
    assert before[0] == service.assessment_score(before[2], before[1])
    assert after[0] == service.assessment_score(after[2], after[1]) <= before[0]
    projects = before[2].communities
    assert projects and (after[0] < before[0] or before[1] >= projects  # share already full
                         or 20 / projects < 0.1)  # a step the one-decimal rounding hides
    # Not yet due on 10 August 2021: not overdue then.
    assert "督办未答复的测试通知" not in district.get(
        "/district/overdue/?as_of=2021-08-10").get_data(as_text=True)
    # The sub-district sees it on its own overdue list; another one does not.
    assert "督办未答复的测试通知" in login("pingdong_staff").get(
        f"/district/overdue/{as_of}").get_data(as_text=True)
    assert "督办未答复的测试通知" not in login("pingxi_staff").get(
        f"/district/overdue/{as_of}").get_data(as_text=True)

    login("pingdong_staff").post(f"/supervision/notices/edit/{created.id}",
                                 data={"reply": "已整改"})
    today = f"?as_of={beijing_today().isoformat()}"
    assert "督办未答复的测试通知" not in district.get(f"/district/overdue/{today}").get_data(
        as_text=True)
    # As of 1 September 2021 it was still unanswered: the past stays as it was.
    assert "督办未答复的测试通知" in district.get(f"/district/overdue/{as_of}").get_data(
        as_text=True)


def test_an_action_item_open_past_its_deadline_is_overdue_until_closed(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    district = login("district")
    title = f"第{uuid.uuid4().hex[:4]}次专题协调会"
    district.post("/district/records/add", data={
        "kind": "coordination", "held_on": "2021-08-05", "title": title,
        "content": "协调供水接收", "follow_up_by": "2021-09-30"})
    with app.app_context():
        record_id = db.session.query(DistrictRecord.id).filter_by(title=title).scalar()
        db.session.remove()
    text = f"平东办事处完成入户摸底{uuid.uuid4().hex[:4]}"
    unit_text = f"供水公司完成查验{uuid.uuid4().hex[:4]}"
    for extra in ({"tenant": str(tenant_ids["pingdong"]), "text": text},
                  {"unit": "供水公司", "text": unit_text}):
        district.post("/district/actions/add",
                      data={"record": str(record_id), "deadline": "2021-08-31", **extra})
    show = district.get(f"/district/records/show/{record_id}").get_data(as_text=True)
    assert text in show and unit_text in show  # listed on the record's page
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        items = {i.text: (i.id, i.tenant_id) for i in db.session.query(ActionItem).filter(
            ActionItem.record_id == record_id)}
        db.session.remove()
    assert items[text][1] == tenant_ids["pingdong"] and items[unit_text][1] is None

    page = district.get("/district/overdue/?as_of=2021-09-10").get_data(as_text=True)
    for wanted in (text, unit_text):
        row = page.split(wanted)[0].rsplit("<tr", 1)[1]
        assert "议定事项逾期" in row and title in row
    assert "供水公司" in page.split(unit_text)[0].rsplit("<tr", 1)[1]
    own = login("pingdong_admin").get("/district/overdue/?as_of=2021-09-10").get_data(
        as_text=True)
    assert text in own and unit_text not in own and title in own
    assert text not in login("pingqiao_admin").get(
        "/district/overdue/?as_of=2021-09-10").get_data(as_text=True)
    for username in ("pingdong_admin", "finance", "water"):
        assert login(username).get(f"/district/actions/show/{items[text][0]}"
                                   ).status_code in REFUSED, username

    # Closing needs a note; with one, the item leaves the overdue list from that day on.
    pk = items[text][0]
    answer = district.post(f"/district/actions/edit/{pk}", data={
        "text": text, "deadline": "2021-08-31", "closed_on": "2021-09-20"},
        follow_redirects=True).get_data(as_text=True)
    assert "办结时须填写办结情况" in answer
    district.post(f"/district/actions/edit/{pk}", data={
        "text": text, "deadline": "2021-08-31", "closed_on": "2021-09-20",
        "closing_note": "摸底完成"})
    assert text in district.get("/district/overdue/?as_of=2021-09-10").get_data(as_text=True)
    assert text not in district.get("/district/overdue/?as_of=2021-09-21").get_data(
        as_text=True)
    assert "逾期办结" in district.get(f"/district/actions/show/{pk}").get_data(as_text=True)


def test_bad_input_is_refused_in_words_and_writes_nothing(
        app: Flask, login: Callable[..., Any], tenant_ids: dict[str, int]) -> None:
    district = login("district")
    tenant = tenant_ids["pingqiao"]
    cases = (({"reply_due": "2021-08-01"}, tenant, "", "答复期限必须填写，且不能早于发文日期"),
             ({"content": "   "}, tenant, "", "督办事由和督办内容必须填写"),
             ({"issued_on": "2099-01-01", "reply_due": "2099-02-01"}, tenant, "",
              "不能晚于今天"),
             ({}, tenant, "供水公司", "二者选一"),
             ({}, None, "", "二者选一"))
    for fields, tenant_id, unit, message in cases:
        number, response = issue(district, tenant_id, unit, **fields)
        page = response.get_data(as_text=True)
        assert message in page, message
        assert notice(app, number) is None, message
        # The form again with what was typed (not the list with everything lost).
        assert not response.history and f'value="{number}"' in page, message
    number, _ = issue(district, tenant)
    _, again = issue(district, tenant, number=number)
    assert "已被另一份督办通知使用" in again.get_data(as_text=True)

    pk = notice(app, number).id
    # The office does not answer for a sub-district.
    answer = district.post(f"/district/notices/edit/{pk}", data={
        "number": number, "issued_on": "2021-08-02", "issuer": "inspectorate",
        "subject": "督办", "content": "内容", "reply_due": "2021-08-16", "reply": "代答"},
        follow_redirects=True).get_data(as_text=True)
    assert "由该办事处" in answer and notice(app, number).reply is None
    # An empty reply, and a reply to another sub-district's notice.
    mine = login("pingqiao_staff")
    answer = mine.post(f"/supervision/notices/edit/{pk}", data={"reply": "  "},
                       follow_redirects=True).get_data(as_text=True)
    assert "答复内容必须填写" in answer and notice(app, number).replied_on is None
    assert login("pingxi_staff").post(f"/supervision/notices/edit/{pk}",
                                      data={"reply": "答复"}).status_code == 404
    assert notice(app, number).replied_on is None
    # The write guard refuses it too, whatever page is used.
    with app.app_context(), use_scope(TenantScope.tenant(tenant_ids["pingxi"]), db.session):
        with pytest.raises(TenantViolation):
            db.session.add(SupervisionNotice(
                tenant_id=tenant, number="伪造", issued_on=dt.date(2021, 8, 2),
                issuer="office", subject="伪造", content="伪造",
                reply_due=dt.date(2021, 8, 9)))
            db.session.flush()
        db.session.rollback()
        db.session.remove()


def test_the_office_answers_for_other_units_and_sub_districts_never_see_those_notices(
        app: Flask, login: Callable[..., Any]) -> None:
    district = login("district")
    number, _ = issue(district, unit="区住建局", subject="住建局督办")
    created = notice(app, number)
    assert created.tenant_id is None and created.unit == "区住建局"
    district.post(f"/district/notices/edit/{created.id}", data={
        "number": number, "issued_on": "2021-08-02", "issuer": "inspectorate",
        "subject": "住建局督办", "content": "内容", "reply_due": "2021-08-16",
        "reply": "已部署", "replied_on": "2021-08-20"})
    answered = notice(app, number)
    assert answered.replied_on == dt.date(2021, 8, 20) and answered.replied_by == "district"
    assert "逾期答复" in district.get("/district/notices/list/").get_data(as_text=True)
    for username in ("pingqiao_admin", "pingxi_staff"):
        client = login(username)
        assert number not in client.get("/supervision/notices/list/").get_data(as_text=True)
        assert client.get(f"/supervision/notices/show/{created.id}").status_code == 404
    admin = login("admin")
    assert number in admin.get("/district/notices/list/").get_data(as_text=True)
    assert admin.get("/district/notices/add").status_code in REFUSED
    for username in ("finance", "water", "district"):
        assert login(username).get("/supervision/notices/list/").status_code in REFUSED
    for username in ("finance", "water", "pingqiao_admin"):
        assert login(username).get("/district/notices/list/").status_code in REFUSED


@pytest.mark.postgres
def test_row_level_security_keeps_notices_to_units_and_other_sub_districts_away(
        app: Flask, tenant_ids: dict[str, int], stack: Any) -> None:
    """With the ORM layers off, PostgreSQL alone: a sub-district reads only its own notices
    and cannot write a notice of no tenant; the district scope writes one."""
    assert TEST_DB == "postgresql"
    pingqiao, pingxi = tenant_ids["pingqiao"], tenant_ids["pingxi"]
    row = {"number": f"RLS{uuid.uuid4().hex[:6]}", "issued_on": dt.date(2021, 8, 2),
           "issuer": "office", "subject": "RLS", "content": "RLS",
           "reply_due": dt.date(2021, 8, 9)}
    table = SupervisionNotice.__table__
    with app.app_context():
        with use_scope(TenantScope.all_read_only(orm_enforced=False), db.session):
            db.session.execute(table.insert().values(tenant_id=None, unit="供水公司", **row))
            db.session.execute(table.insert().values(
                tenant_id=None, unit="供水公司", **dict(row, number=row["number"] + "B")))
            db.session.commit()
        with use_scope(TenantScope.tenant(pingqiao, orm_enforced=False), db.session):
            tenants = set(db.session.execute(sa.select(table.c.tenant_id)).scalars())
            assert tenants <= {pingqiao}
            with pytest.raises(sa.exc.DBAPIError):
                db.session.execute(table.insert().values(tenant_id=None, unit="x",
                                                         **dict(row, number="x")))
            db.session.rollback()
            with pytest.raises(sa.exc.DBAPIError):
                db.session.execute(table.insert().values(tenant_id=pingxi,
                                                         **dict(row, number="y")))
            db.session.rollback()
            changed = db.session.execute(table.update().where(
                table.c.number == row["number"]).values(reply="x")).rowcount
            assert changed == 0
            db.session.rollback()
        db.session.remove()


def test_items_addressed_to_units_count_for_no_sub_district_in_the_ranking() -> None:
    figures = Figures(communities=4, accepted=2, households=10, installed=5)
    cells = {service.RollupKey(1, "water", 2021, None): figures}

    def late(tenant_id: int | None) -> service.SupervisionItem:
        return service.SupervisionItem("notice", 1, tenant_id, None, "供水公司", "督办", "文号",
                                       dt.date(2021, 8, 16), 16)

    ranked = service.rankings(None, cells, [late(1), late(None)], [], [(1, "甲")],
                              dt.date(2021, 9, 1))
    # 5/10 × 50 + 2/4 × 30 + (1 − 1/4) × 20 = 25 + 15 + 15
    assert ranked[0].overdue == 1 and ranked[0].score == Decimal("55.0")
    assert service.SCORE_FORMULA.count("督办通知") == 1
