"""The rollups' summary table (per community × utility, the project's state and the meter
accounts counted by status), the published bulletins, the office's records with their action
items, and supervision notices (督办通知).

On PostgreSQL, statement-level triggers on 户表, 住户, 改造项目 and 小区 keep the summary equal to
the base rows under
concurrent edits (see migration 0008_district); SQLite, the small embedded default, reads the
base rows instead. `rebuild_account_counts` recomputes it from scratch (bulk loads, repairs).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from onemeter.database import Model
from onemeter.formatting import BEIJING, local_date
from onemeter.tenancy import Tenant, TenantScoped


class RollupCount(TenantScoped, Model):
    """One community × utility: its retrofit project's state (None: no project) and how many
    meter accounts it has with that utility — all, those of opted-out households, and the
    others by status.

    Maintained by the database (PostgreSQL triggers), never written by the application.
    Counts may reach 0 and the row stay; rows go with their community (a trigger).
    """

    __tablename__ = "om_rollup_count"
    # No foreign key to the community: derived rows must not count as a community's
    # dependents (the import's undo refuses to delete a community something refers to);
    # a trigger on om_community removes them with their community instead.
    __tenant_table_args__ = (
        sa.UniqueConstraint("tenant_id", "community_id", "utility",
                            name="uq_om_rollup_count_community_utility"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    community_id: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    utility: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    project_state: Mapped[str | None] = mapped_column(sa.String(40))
    accounts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    opted_out: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    surveyed: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    installed: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    active: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    closed: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)


#: The summary's count columns, and how one account (a, its household h) adds to each.
COUNT_COLUMNS = {
    "accounts": "1",
    "opted_out": "CASE WHEN h.opted_out THEN 1 ELSE 0 END",
    "surveyed": "CASE WHEN NOT h.opted_out AND a.status = 'surveyed' THEN 1 ELSE 0 END",
    "installed": "CASE WHEN NOT h.opted_out AND a.status = 'installed' THEN 1 ELSE 0 END",
    "active": "CASE WHEN NOT h.opted_out AND a.status = 'active' THEN 1 ELSE 0 END",
    "closed": "CASE WHEN NOT h.opted_out AND a.status = 'closed' THEN 1 ELSE 0 END",
}

LIVE_COUNTS_SQL = (
    "SELECT a.tenant_id, h.community_id, a.utility, "
    + ", ".join(f"sum({expr}) AS {name}" for name, expr in COUNT_COLUMNS.items())
    + " FROM om_meter_account a JOIN om_household h"
    " ON h.tenant_id = a.tenant_id AND h.id = a.household_id"
    " {where} GROUP BY a.tenant_id, h.community_id, a.utility")

_REBUILD_TENANT = (
    f"INSERT INTO om_rollup_count (tenant_id, community_id, utility, "
    f"{', '.join(COUNT_COLUMNS)}) " + LIVE_COUNTS_SQL.format(where="WHERE a.tenant_id = %(tenant)s"))
_REBUILD_PROJECTS = (
    "INSERT INTO om_rollup_count AS c (tenant_id, community_id, utility, project_state, "
    + ", ".join(COUNT_COLUMNS) + ") SELECT tenant_id, community_id, utility, state, "
    + ", ".join("0" for _ in COUNT_COLUMNS) + " FROM om_retrofit_project"
    " WHERE tenant_id = %(tenant)s ON CONFLICT (tenant_id, community_id, utility)"
    " DO UPDATE SET project_state = EXCLUDED.project_state")


def rebuild_account_counts(connection: sa.Connection) -> int:
    """Recompute the summary table from 户表, 住户 and 改造项目, tenant by tenant (PostgreSQL).

    For bulk loads that bypass the triggers and for repairs. Runs in the caller's
    transaction with each tenant as write scope in turn (row-level security), then restores
    the settings the caller had. Returns the number of summary rows written.
    """
    if connection.dialect.name != "postgresql":
        return 0
    saved = connection.exec_driver_sql(
        "SELECT current_setting('app.all_tenants', true),"
        " current_setting('app.write_tenant_id', true)").one()
    connection.exec_driver_sql("SELECT set_config('app.all_tenants', 'on', true)")
    written = 0
    tenants = [t for (t,) in connection.exec_driver_sql("SELECT id FROM om_tenant ORDER BY id")]
    for tenant in tenants:
        connection.exec_driver_sql("SELECT set_config('app.write_tenant_id', %(t)s, true)",
                                   {"t": str(tenant)})
        connection.exec_driver_sql("DELETE FROM om_rollup_count WHERE tenant_id = %(t)s",
                                   {"t": tenant})
        written += connection.exec_driver_sql(_REBUILD_TENANT, {"tenant": tenant}).rowcount
        connection.exec_driver_sql(_REBUILD_PROJECTS, {"tenant": tenant})
    connection.exec_driver_sql(
        "SELECT set_config('app.all_tenants', %(a)s, true),"
        " set_config('app.write_tenant_id', %(w)s, true)",
        {"a": saved[0] or "", "w": saved[1] or ""})
    return written


class BulletinSnapshot(Model):
    """A published monthly bulletin (月度通报), frozen as the office published it.

    The figures (JSON) and the workbook (bytes, with its SHA-256) are stored, so the
    bulletin of any month can be handed out again exactly as it went out, whatever changed
    in the ledgers since. District-wide like the plan targets: no tenant, read and
    published by the district office only. Never updated or deleted by the application.
    """

    __tablename__ = "om_bulletin_snapshot"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    #: "2026-11": one bulletin per month.
    month: Mapped[str] = mapped_column(sa.String(7), nullable=False, unique=True)
    #: The day the figures were judged on (deadlines, trends): the month's last day, or the
    #: publication day for the current month.
    as_of: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    published_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, nullable=False)
    published_by: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    data: Mapped[dict] = mapped_column(sa.JSON, nullable=False)
    workbook: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    sha256: Mapped[str] = mapped_column(sa.String(64), nullable=False)


#: 六: the office holds a monthly work meeting, ad hoc coordination meetings, and inspects.
RECORD_KINDS = {"meeting": "工作例会", "coordination": "专题协调会", "inspection": "督导检查"}


class DistrictRecord(Model):
    """A meeting or supervision record of the office (例会、专题协调会、督导检查纪要).

    District-wide, no tenant: read and written by the district office only (a sub-district
    does not see the minutes). Kept, never deleted through the application.
    """

    __tablename__ = "om_district_record"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(
        sa.Enum(*RECORD_KINDS, name="ck_om_district_record_kind", native_enum=False,
                create_constraint=True, length=16), nullable=False)
    held_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    title: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    #: 参加人员 (六: the district discipline commission's office head is invited).
    participants: Mapped[str | None] = mapped_column(sa.Text)
    #: 涉及的办事处或单位, as written in the minutes.
    concerns: Mapped[str | None] = mapped_column(sa.String(200))
    #: 议定事项 / 督导发现的问题及整改要求.
    content: Mapped[str] = mapped_column(sa.Text, nullable=False)
    follow_up_by: Mapped[dt.date | None] = mapped_column(sa.Date)
    recorded_by: Mapped[str | None] = mapped_column(sa.String(128))
    recorded_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)

    def __repr__(self) -> str:
        return f"{local_date(self.held_on)} {self.title}"

    @property
    def kind_label(self) -> str:
        return RECORD_KINDS.get(self.kind, self.kind)


class Addressed:
    """An addressee that is either a sub-district (the row's tenant) or another unit named
    in words (供水公司, 区住建局…): exactly one of them. Rows addressed to a sub-district are
    its tenant data (it reads them, another one never does); the others belong to no tenant
    and only the district-wide scopes read them (`TenantScoped.__tenant_optional__`)."""

    __tenant_optional__ = True

    @property
    def addressee(self) -> str:
        tenant = getattr(self, "tenant", None)
        return tenant.name if tenant is not None else (self.unit or "")


class ActionItem(Addressed, TenantScoped, Model):
    """A decision or rectification task of a record (议定事项/整改任务): what, who answers for
    it, by when; closed with a date and a note. Written with its record by the district
    office; a sub-district reads the items addressed to it on its overdue list."""

    __tablename__ = "om_action_item"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("om_district_record.id"), nullable=False, index=True)
    record: Mapped[DistrictRecord] = relationship(DistrictRecord, backref="action_items")
    tenant: Mapped[Tenant | None] = relationship(Tenant)
    #: 责任单位 other than a sub-district (区住建局, 供水公司…).
    unit: Mapped[str | None] = mapped_column(sa.String(100))
    text: Mapped[str] = mapped_column(sa.Text, nullable=False)
    deadline: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    closed_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    closing_note: Mapped[str | None] = mapped_column(sa.Text)

    def __repr__(self) -> str:
        return f"{self.addressee}：{(self.text or '')[:30]}"

    @property
    def status(self) -> str:
        """办理中, 逾期未办结, 已办结 or 逾期办结 (a late closing stays marked)."""
        if self.closed_on is None:
            return "逾期未办结" if beijing_today() > self.deadline else "办理中"
        return "逾期办结" if self.closed_on > self.deadline else "已办结"

    @classmethod
    def om_sample(cls, session: sa.orm.Session, tenant_id: int, marker: str) -> ActionItem:
        """A row for the access matrix: its record (district-wide) made alongside."""
        record = DistrictRecord(kind="meeting", held_on=dt.date(2021, 7, 7),
                                title=f"{marker}title", content=f"{marker}content")
        item = cls(record=record, tenant_id=tenant_id, unit=f"{marker}unit",
                   text=f"{marker}text", deadline=dt.date(2021, 7, 7),
                   closing_note=f"{marker}closing_note")
        session.add(item)
        session.flush()
        return item


#: Who issues a 督办通知: the office, or the district's supervision bureau (督查局).
ISSUERS = {"office": "区领导小组办公室", "inspectorate": "区督查局"}


class SupervisionNotice(Addressed, TenantScoped, Model):
    """A supervision notice (督办通知, 平督办〔2026〕3号) to a sub-district or a unit, with the
    reply it requires by a date. A sub-district answers its own notices; the district office
    enters the replies of other units. A reply after the date is kept, marked 逾期答复."""

    __tablename__ = "om_supervision_notice"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    #: 文号, e.g. 平督办〔2026〕3号.
    number: Mapped[str] = mapped_column(sa.String(60), nullable=False)
    issued_on: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    issuer: Mapped[str] = mapped_column(
        sa.Enum(*ISSUERS, name="ck_om_supervision_notice_issuer", native_enum=False,
                create_constraint=True, length=16), nullable=False)
    issued_by: Mapped[str | None] = mapped_column(sa.String(128))
    tenant: Mapped[Tenant | None] = relationship(Tenant)
    unit: Mapped[str | None] = mapped_column(sa.String(100))
    subject: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    content: Mapped[str] = mapped_column(sa.Text, nullable=False)
    reply_due: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    reply: Mapped[str | None] = mapped_column(sa.Text)
    replied_on: Mapped[dt.date | None] = mapped_column(sa.Date)
    replied_by: Mapped[str | None] = mapped_column(sa.String(128))

    def __repr__(self) -> str:
        return f"{self.number} {self.subject}"

    @property
    def issuer_label(self) -> str:
        return ISSUERS.get(self.issuer, self.issuer)

    @property
    def late_reply(self) -> bool:
        return self.replied_on is not None and self.replied_on > self.reply_due

    @property
    def status(self) -> str:
        return self.status_on(beijing_today())

    def status_on(self, today: dt.date) -> str:
        """待答复, 逾期未答复, 已答复 or 逾期答复 (a late reply stays marked)."""
        if self.replied_on is None:
            return "逾期未答复" if today > self.reply_due else "待答复"
        return "逾期答复" if self.late_reply else "已答复"


def beijing_today() -> dt.date:
    """Today in Beijing (deadlines are the sub-districts' calendar days)."""
    return dt.datetime.now(dt.UTC).astimezone(BEIJING).date()
