"""The registry read like the plan: developers' credit codes, the plan's categories and phases,
one household recorded once per community, and the plan's own totals checked, never assumed."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from flask import Flask

from onemeter.database import db
from onemeter.registry.categories import (
    DELIVERED_5_10,
    DELIVERED_GT10_SCATTERED,
    DELIVERED_LT5,
    DEVELOPER_COMMITTED,
    OLD_RENOVATION,
    PLAN_REFERENCE_DATE,
    anniversary,
    derive_category,
    phase_of,
)
from onemeter.registry.models import Community, Developer, Household, check_credit_code
from onemeter.registry.normalize import chinese_numeral, household_key, normalize_part
from onemeter.registry.plan import load_plan, plan_totals_check, read_plan
from onemeter.tenancy import TenantScope, use_scope

# --- 统一社会信用代码 (GB 32100-2015) ---------------------------------------------------------

_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def gb32100_check_character(first17: str) -> str:
    """The standard's own formula, written out here to cross-check the library we use."""
    total = sum(_ALPHABET.index(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return _ALPHABET[(31 - total % 31) % 31]


#: Real-format codes: 9 (registered by market regulation) 1 (enterprise) 411503 (平桥区),
#: an organization code, and the check character computed by the formula above.
VALID_CODES = ["91411503MA40XK2P10", "91411500706783512N", "12411503005678901X",
               "91110000600037341L"]


@pytest.mark.parametrize("code", VALID_CODES)
def test_credit_code_with_correct_check_character_is_accepted(code: str) -> None:
    assert gb32100_check_character(code[:17]) == code[17]
    assert check_credit_code(code) == code
    assert check_credit_code(f" {code[:6]} {code[6:]} ".lower()) == code  # spaces, case


@pytest.mark.parametrize("code, message", [
    ("91411503MA40XK2P11", "校验位"),      # check character off by one
    ("91411500706783512M", "校验位"),
    ("91411503MA40XK2P1", "18位"),          # one character short
    ("91411503MA40XK2P100", "18位"),
    ("9141150IMA40XK2P10", "字符"),         # I is not in the alphabet / region not digits
    ("91411503MA40XK2PO0", "字符"),         # O is never used
])
def test_credit_code_with_wrong_length_character_or_check_digit_is_refused(
        code: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_credit_code(code)


def test_developer_refuses_an_invalid_credit_code_on_the_model_too() -> None:
    with pytest.raises(ValueError, match="校验位"):
        Developer(name="某置业有限公司", credit_code="91411503MA40XK2P11")
    assert Developer(name="某置业有限公司", credit_code=VALID_CODES[0]).credit_code == \
        VALID_CODES[0]


# --- 分类与改造年度 (二) ----------------------------------------------------------------------

def category(delivered: dt.date | None, **flags: bool) -> str | None:
    return derive_category(developer_committed=flags.get("committed", False),
                           old_renovation=flags.get("renovation", False),
                           delivery_date=delivered, scattered=flags.get("scattered", False))


def test_ages_are_counted_on_the_day_the_plan_was_issued() -> None:
    assert PLAN_REFERENCE_DATE == dt.date(2021, 7, 7)


@pytest.mark.parametrize("delivered, expected, phase", [
    (dt.date(2019, 1, 1), DELIVERED_LT5, 2021),
    (dt.date(2016, 7, 8), DELIVERED_LT5, 2021),          # one day short of five years
    (dt.date(2016, 7, 7), DELIVERED_5_10, 2022),         # exactly five years: 5–10
    (dt.date(2013, 3, 1), DELIVERED_5_10, 2022),
    (dt.date(2011, 7, 7), DELIVERED_5_10, 2022),         # exactly ten years: still 5–10
    (dt.date(2011, 7, 6), DELIVERED_GT10_SCATTERED, 2023),  # more than ten years
    (dt.date(1998, 10, 1), DELIVERED_GT10_SCATTERED, 2023),
])
def test_delivery_age_decides_category_and_phase_with_boundaries_at_five_and_ten_years(
        delivered: dt.date, expected: str, phase: int) -> None:
    assert category(delivered) == expected
    assert phase_of(expected) == phase


def test_developer_commitment_comes_first_then_old_renovation_then_age() -> None:
    recent = dt.date(2020, 1, 1)
    assert category(dt.date(2000, 1, 1), committed=True, renovation=True) == DEVELOPER_COMMITTED
    assert category(dt.date(2000, 1, 1), renovation=True) == OLD_RENOVATION
    assert phase_of(DEVELOPER_COMMITTED) == phase_of(OLD_RENOVATION) == 2021
    assert category(recent, scattered=True) == DELIVERED_GT10_SCATTERED  # 零星 → 2023
    assert category(None) is None and phase_of(None) is None  # no delivery date: 待定


def test_anniversary_of_29_february_falls_on_28_february() -> None:
    assert anniversary(dt.date(2016, 2, 29), 5) == dt.date(2021, 2, 28)


def _community(app: Flask, tenant_id: int, **values: object) -> int:
    with app.app_context(), use_scope(TenantScope.tenant(tenant_id), db.session):
        community = Community(name=f"测试小区{uuid.uuid4().hex[:6]}", **values)
        db.session.add(community)
        db.session.commit()
        return community.id


def test_community_stores_its_derived_category_and_phase(
        app: Flask, tenant_ids: dict[str, int]) -> None:
    t = tenant_ids["pingqiao"]
    pk = _community(app, t, delivery_date=dt.date(2014, 5, 1))
    with app.app_context(), use_scope(TenantScope.tenant(t), db.session):
        community = db.session.get(Community, pk)
        assert (community.derived_category, community.derived_phase) == (DELIVERED_5_10, 2022)
        community.old_renovation = True
        db.session.commit()
        assert (community.category, community.phase_year) == (OLD_RENOVATION, 2021)
        found = db.session.scalars(sa.select(Community.id).where(
            Community.category == OLD_RENOVATION, Community.phase_year == 2021)).all()
        assert pk in found  # the rule in force is queryable in SQL (rollups)


def test_override_needs_a_reason_and_the_derived_value_stays_beside_it(
        app: Flask, tenant_ids: dict[str, int]) -> None:
    t = tenant_ids["pingqiao"]
    pk = _community(app, t, delivery_date=dt.date(2019, 9, 1))
    with app.app_context(), use_scope(TenantScope.tenant(t), db.session):
        community = db.session.get(Community, pk)
        with pytest.raises(ValueError, match="理由"):
            community.set_override(category=DELIVERED_5_10, phase=None, reason="  ", by="x")
        community.set_override(category=None, phase=2022, reason="供电线路随道路改造同步实施",
                               by="pingqiao_staff")
        db.session.commit()
        assert (community.category, community.phase_year) == (DELIVERED_LT5, 2022)
        assert (community.derived_category, community.derived_phase) == (DELIVERED_LT5, 2021)
        assert community.override_label == "人工调整"
        community.set_override(category=DELIVERED_GT10_SCATTERED, phase=None, reason="实为零星楼栋",
                               by="pingqiao_staff")
        db.session.commit()
        assert community.phase_year == 2023  # the overridden category brings its phase
    # The database refuses an override without a reason whatever path writes it.
    with app.app_context(), use_scope(TenantScope.tenant(t), db.session):
        community = db.session.get(Community, pk)
        community.override_reason = ""
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_community_list_shows_override_badge_and_both_values(
        app: Flask, tenant_ids: dict[str, int], login) -> None:
    t = tenant_ids["pingqiao"]
    name = f"承诺小区{uuid.uuid4().hex[:6]}"
    with app.app_context(), use_scope(TenantScope.tenant(t), db.session):
        community = Community(name=name, developer_committed=True)
        db.session.add(community)
        db.session.commit()
        pk = community.id
    client = login("pingqiao_staff")
    response = client.post(f"/registry/communities/override/{pk}",
                           data={"category": "", "phase": "2022", "reason": ""})
    assert "必须填写理由" in response.get_data(as_text=True)
    response = client.post(f"/registry/communities/override/{pk}",
                           data={"category": DELIVERED_5_10, "phase": "", "reason": "承诺单位已履约部分楼栋"},
                           follow_redirects=True)
    assert response.status_code == 200
    page = client.get(f"/registry/communities/list/?_flt_0_name={name}").get_data(as_text=True)
    assert "人工调整" in page and "label-warning" in page
    assert "建成交付5至10年" in page and "开发建设单位出具承诺" in page  # in force and by rule
    assert "承诺单位已履约部分楼栋" in page
    # Another sub-district cannot reach the override page of this community.
    other = login("pingxi_admin")
    assert other.get(f"/registry/communities/override/{pk}").status_code == 404


# --- 住户：一户只登记一次 ------------------------------------------------------------------

@pytest.mark.parametrize("building, unit, room", [
    ("3", "2", "102"), ("3#", "二单元", "102室"), ("3号楼", "2单元", "１０２"),
    ("三号楼", " 二 单元", "102"), ("3栋", "２", "一〇二"), ("３＃", "2", "0102"),
    (" 3 幢", "第2单元".replace("第", ""), "102 室"),
])
def test_messy_addresses_of_one_room_give_one_natural_key(building: str, unit: str,
                                                          room: str) -> None:
    assert household_key(building, unit, room) == "3-2-102"


@pytest.mark.parametrize("text, expected", [
    ("十", "10"), ("十二栋", "12"), ("二十", "20"), ("一百零二室", "102"), ("两单元", "2"),
    ("A座", "A"), ("b栋", "B"), ("", ""), (None, ""),
])
def test_address_parts_normalize_chinese_numerals_and_counters(text: str | None,
                                                               expected: str) -> None:
    assert normalize_part(text) == expected


def test_chinese_numerals_read_positionally_or_digit_by_digit() -> None:
    assert [chinese_numeral(t) for t in ("三", "十五", "二十三", "一〇二", "一百零二")] == \
        [3, 15, 23, 102, 102]


def test_same_room_twice_in_a_community_is_refused_but_allowed_in_another(
        app: Flask, tenant_ids: dict[str, int]) -> None:
    t = tenant_ids["pingqiao"]
    first, second = _community(app, t), _community(app, t)
    with app.app_context(), use_scope(TenantScope.tenant(t), db.session):
        db.session.add(Household(community_id=first, building="3#", unit="2", room="102"))
        db.session.add(Household(community_id=second, building="三号楼", unit="二单元",
                                 room="102室"))
        db.session.commit()
        db.session.add(Household(community_id=first, building="三号楼", unit="二单元",
                                 room="１０２"))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()
        keys = db.session.scalars(sa.select(Household.natural_key).where(
            Household.community_id.in_([first, second]))).all()
        assert keys == ["3-2-102", "3-2-102"]


def test_duplicate_household_form_says_why_in_chinese(
        app: Flask, tenant_ids: dict[str, int], login) -> None:
    t = tenant_ids["pingqiao"]
    pk = _community(app, t)
    client = login("pingqiao_staff")
    form = {"community": str(pk), "building": "5栋", "unit": "1", "room": "201"}
    client.post("/registry/households/add", data=form)
    response = client.post("/registry/households/add",
                           data=dict(form, building="五号楼", room="201室", owner_name="李秀英"))
    # The form again, with what was typed (FAB redirected to the list: all of it lost).
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "不能重复登记" in page
    assert all(f'value="{typed}"' in page for typed in ("五号楼", "201室", "李秀英"))
    with app.app_context(), use_scope(TenantScope.tenant(t), db.session):
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Household).where(
            Household.community_id == pk)) == 1


def test_opting_out_records_when(app: Flask, tenant_ids: dict[str, int]) -> None:
    t = tenant_ids["pingqiao"]
    pk = _community(app, t)
    with app.app_context(), use_scope(TenantScope.tenant(t), db.session):
        household = Household(community_id=pk, building="1", unit="1", room="101",
                              opted_out=True, optout_reason="已自行安装分表")
        db.session.add(household)
        db.session.commit()
        assert household.opted_out_at is not None
        household.opted_out = False
        db.session.commit()
        assert household.opted_out_at is None


def test_household_phone_and_id_number_are_masked_for_the_district_viewer(
        app: Flask, tenant_ids: dict[str, int], login) -> None:
    t = tenant_ids["pingqiao"]
    pk = _community(app, t)
    with app.app_context(), use_scope(TenantScope.tenant(t), db.session):
        db.session.add(Household(community_id=pk, building="9", unit="1", room="909",
                                 phone="13912345678", id_number="411503199001011234"))
        db.session.commit()
    staff = login("pingqiao_staff").get("/registry/households/list/?_flt_0_room=909")
    assert "13912345678" in staff.get_data(as_text=True)
    viewer = login("district").get("/registry/households/list/?_flt_0_room=909")
    assert viewer.status_code == 200 and "13912345678" not in viewer.get_data(as_text=True)


# --- 方案数字核对 ----------------------------------------------------------------------------

def test_plan_totals_check_reports_where_the_plans_own_numbers_do_not_add_up() -> None:
    _, rows = read_plan()
    found = {(d.utility, d.phase_year, d.measure, d.summed, d.stated)
             for d in plan_totals_check(rows)}
    assert found == {
        # 2021 water: 17+27+42 = 86 communities, 15,500+7,300+3,300 = 26,100 households,
        # against the stated 85 and 26,200.
        ("water", 2021, "communities", 86, 85),
        ("water", 2021, "households", 26100, 26200),
        # 2021 electricity: 11,200+7,800+400 = 19,400 against the stated 18,900.
        ("electricity", 2021, "households", 19400, 18900),
        # Section 一: water 86+49+55 = 190 communities against 189; the stated phase
        # totals 26,200+10,600+5,300 = 42,100 households against 42,000.
        ("water", None, "communities", 190, 189),
        ("water", None, "households", 42100, 42000),
        # Electricity: 19,400+9,400+3,600 = 32,400 by category, 18,900+9,400+3,600 = 31,900
        # by the stated phase totals, against 32,000.
        ("electricity", None, "households", 32400, 32000),
        ("electricity", None, "households", 31900, 32000),
    }


def test_plan_shows_its_numbers_never_corrects_them() -> None:
    _, rows = read_plan()
    stated = {(r.utility, r.phase_year): (r.communities, r.households)
              for r in rows if r.category is None}
    assert stated[("water", 2021)] == (85, 26200)
    assert stated[("electricity", 2021)] == (48, 18900)
    assert stated[("water", None)] == (189, 42000)
    assert stated[("electricity", None)] == (118, 32000)


def test_loading_the_plan_twice_changes_nothing_and_the_page_shows_the_differences(
        app: Flask, login) -> None:
    with app.app_context(), use_scope(TenantScope.all_read_only(), db.session):
        load_plan(db.session)
        db.session.commit()
        assert load_plan(db.session) == (0, 0)
        db.session.commit()
    page = login("pingqiao_staff").get("/registry/plan/list/").get_data(as_text=True)
    assert "26,100" in page and "26,200" in page and "方案合计核对" in page
    assert "开发建设单位出具承诺" in page


def test_plan_cli_prints_the_differences_in_chinese(app: Flask) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["plan", "check"])
    assert result.exit_code == 0, result.output
    assert "2021年 供水 户数：各类别之和 26,100 户，方案所列 26,200 户，差 -100 户" in result.output
    result = runner.invoke(args=["plan", "load"])
    assert result.exit_code == 0 and "改造计划已载入" in result.output
