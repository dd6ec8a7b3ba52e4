"""督办 pages: the office's supervision notices (督办通知) and the action items of its records
(议定事项), written by the district office; a sub-district's 督办事项 page to answer its own.

A row addressed to a sub-district is that sub-district's tenant data: the office writes it in
that tenant's scope only (as a utility's staff write a step), the sub-district reads and
answers it, no other sub-district reaches it. A row addressed to another unit has no tenant:
district data, read and written by the district scopes only (`__tenant_optional__`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import sqlalchemy as sa
from flask import g, request
from flask_appbuilder import ModelView
from flask_appbuilder.models.sqla.filters import FilterEqual
from flask_appbuilder.models.sqla.interface import SQLAInterface

from onemeter.district.models import ISSUERS, ActionItem, SupervisionNotice, beijing_today
from onemeter.errors import SaveErrorMessages
from onemeter.formatting import local_date
from onemeter.security import (
    DISTRICT_VIEWER,
    PLATFORM_ADMIN,
    TENANT_ADMIN,
    TENANT_STAFF,
)
from onemeter.tenancy import TenantScope, current_scope, use_scope


class AddressedInterface(SQLAInterface):
    """Writes an addressed row from a district scope (which reads every tenant and writes
    none) in the scope of the one tenant it is addressed to — the write guard and row-level
    security then accept exactly that row — or, addressed to a unit, as a row of no tenant.
    A sub-district's own scope writes as usual (its own rows only)."""

    def _writing(self, item: Any) -> Any:
        scope = current_scope()
        if not scope.reads_all:
            return contextlib.nullcontext()
        return use_scope(TenantScope(read=None, write=item.tenant_id,
                                     orm_enforced=scope.orm_enforced,
                                     label=f"district-addressed:{item.tenant_id}"),
                         self.session)

    def add(self, item: Any, commit: bool = True) -> None:
        with self._writing(item):
            super().add(item, commit)

    def edit(self, item: Any, commit: bool = True) -> None:
        with self._writing(item):
            super().edit(item, commit)


def _text(value: str | None) -> str:
    return (value or "").strip()


def _addressee(item: Any, what: str) -> None:
    """Exactly one addressee: a sub-district, or another unit named in words."""
    item.unit = _text(item.unit) or None
    if item.tenant is not None:
        item.tenant_id = item.tenant.id
    if (item.tenant_id is None) == (item.unit is None):
        raise ValueError(f"{what}须选择一个办事处，或填写其他单位名称（二者选一）")


class _NoAutoflush:
    """Checks run with autoflush off: the populated row must not be flushed by a lookup
    before `AddressedInterface` writes it in its addressee's scope (the write guard would
    refuse it under the district's read-only scope)."""

    datamodel: Any

    def pre_add(self, item: Any) -> None:
        with self.datamodel.session.no_autoflush:
            self.check_add(item)

    def pre_update(self, item: Any) -> None:
        with self.datamodel.session.no_autoflush:
            self.check_update(item)

    def check_add(self, item: Any) -> None:
        """Refuse (ValueError, in Chinese) or complete a new row."""

    def check_update(self, item: Any) -> None:
        """Refuse (ValueError, in Chinese) or complete an edited row."""


def _stored(item: Any, column: str) -> Any:
    """The value `column` had before the form was applied."""
    history = sa.inspect(item).attrs[column].history
    return next(iter(history.deleted or history.unchanged or ()), None)


def _lines(text: str | None) -> list[str]:
    return (text or "").strip().splitlines()


#: The office's own records: the district office adds and corrects, the platform admin reads;
#: nothing is deleted through the application.
OFFICE_KEEPS = {DISTRICT_VIEWER: ("can_list", "can_show", "can_add", "can_edit"),
                PLATFORM_ADMIN: ("can_list", "can_show")}

_ACTIVE_TENANTS = {"tenant": [["active", FilterEqual, True]]}


class SupervisionNoticeView(_NoAutoflush, SaveErrorMessages, ModelView):
    """督办通知 as the office keeps them: issued to a sub-district or a unit, with the reply
    due; the office enters the replies of units, a sub-district answers its own."""

    datamodel = AddressedInterface(SupervisionNotice)
    route_base = "/district/notices"
    om_roles = OFFICE_KEEPS
    base_permissions = list(OFFICE_KEEPS[DISTRICT_VIEWER])
    list_title = show_title = "督办通知"
    add_title = "发出督办通知"
    edit_title = "修改督办通知或录入单位答复"
    list_columns = ["number", "issued_on", "issuer_label", "addressee", "subject",
                    "reply_due", "status", "replied_on"]
    show_columns = ["number", "issued_on", "issuer_label", "issued_by", "addressee", "subject",
                    "content", "reply_due", "status", "reply", "replied_on", "replied_by"]
    add_columns = ["number", "issued_on", "issuer", "tenant", "unit", "subject", "content",
                   "reply_due"]
    # The addressee stays as issued: a notice to another addressee is a new notice.
    edit_columns = ["number", "issued_on", "issuer", "subject", "content", "reply_due",
                    "reply", "replied_on"]
    search_columns = ["number", "subject", "tenant", "unit", "issued_on", "reply_due"]
    add_form_query_rel_fields = _ACTIVE_TENANTS
    label_columns = {"number": "文号", "issued_on": "发文日期", "issuer": "督办单位",
                     "issuer_label": "督办单位", "issued_by": "经办人",
                     "tenant": "督办对象（办事处）", "unit": "督办对象（其他单位）",
                     "addressee": "督办对象", "subject": "督办事由", "content": "督办内容",
                     "reply_due": "答复期限", "status": "答复情况", "reply": "答复内容",
                     "replied_on": "答复日期", "replied_by": "答复人"}
    description_columns = {
        "number": "如 平督办〔2026〕3号",
        "issuer": "office 区领导小组办公室、inspectorate 区督查局",
        "unit": "督办对象不是办事处时填写（如 供水公司、区住建局），与办事处二者选一",
        "reply": "仅发往其他单位的通知由办公室录入答复；发往办事处的由该办事处在“督办事项”中答复",
        "replied_on": "不填则为今天"}
    formatters_columns = {"issued_on": local_date, "reply_due": local_date,
                          "replied_on": local_date}
    base_order = ("issued_on", "desc")

    def _check(self, item: SupervisionNotice) -> None:
        today = beijing_today()
        item.number = _text(item.number)
        if not item.number:
            raise ValueError("文号必须填写，如 平督办〔2026〕3号")
        same = self.datamodel.session.query(SupervisionNotice.id).filter(
            SupervisionNotice.number == item.number, SupervisionNotice.id != (item.id or -1))
        if same.first() is not None:
            raise ValueError(f"文号 {item.number} 已被另一份督办通知使用")
        if item.issuer not in ISSUERS:
            raise ValueError(f"督办单位只能是：{'、'.join(ISSUERS.values())}")
        if item.issued_on is None or item.issued_on > today:
            raise ValueError("发文日期必须填写，且不能晚于今天")
        if not _text(item.subject) or not _text(item.content):
            raise ValueError("督办事由和督办内容必须填写")
        if item.reply_due is None or item.reply_due < item.issued_on:
            raise ValueError("答复期限必须填写，且不能早于发文日期")

    def check_add(self, item: SupervisionNotice) -> None:
        _addressee(item, "督办对象")
        self._check(item)
        item.reply = item.replied_on = item.replied_by = None
        item.issued_by = g.user.username

    def check_update(self, item: SupervisionNotice) -> None:
        self._check(item)
        stored_reply, stored_on = _stored(item, "reply"), _stored(item, "replied_on")
        if _lines(stored_reply) == _lines(item.reply) and stored_on == item.replied_on:
            # The form sends back the reply it showed (a browser's line endings aside).
            item.reply = stored_reply
            return
        if item.tenant_id is not None:
            raise ValueError("发往办事处的督办通知由该办事处在“督办事项”中答复，办公室不能代为答复")
        item.reply = _text(item.reply) or None
        if item.reply is None:  # the reply withdrawn (entered on the wrong notice)
            item.replied_on = item.replied_by = None
            return
        today = beijing_today()
        item.replied_on = item.replied_on or today
        if not item.issued_on <= item.replied_on <= today:
            raise ValueError("答复日期不能早于发文日期，也不能晚于今天")
        item.replied_by = g.user.username


class NoticeReplyView(_NoAutoflush, SaveErrorMessages, ModelView):
    """督办事项: a sub-district's own notices, answered here. The reply's date is the day it
    is given; a reply after the due date is kept and marked 逾期答复; a correction keeps it."""

    datamodel = SQLAInterface(SupervisionNotice)
    route_base = "/supervision/notices"
    om_roles = {TENANT_ADMIN: ("can_list", "can_show", "can_edit"),
                TENANT_STAFF: ("can_list", "can_show", "can_edit")}
    base_permissions = ["can_list", "can_show", "can_edit"]
    list_title = show_title = "督办事项"
    edit_title = "答复督办通知"
    list_columns = ["number", "issued_on", "issuer_label", "subject", "reply_due", "status",
                    "replied_on"]
    show_columns = ["number", "issued_on", "issuer_label", "subject", "content", "reply_due",
                    "status", "reply", "replied_on", "replied_by"]
    edit_columns = ["reply"]
    search_columns = ["number", "subject", "issued_on", "reply_due"]
    label_columns = SupervisionNoticeView.label_columns
    description_columns = {"reply": "落实情况；提交后记录答复日期和答复人，逾期提交的标为逾期答复"}
    formatters_columns = SupervisionNoticeView.formatters_columns
    base_order = ("reply_due", "asc")
    edit_template = "onemeter/notice_reply.html"

    def check_update(self, item: SupervisionNotice) -> None:
        if item.tenant_id is None or item.tenant_id != current_scope().write:
            raise ValueError("只能答复发给本办事处的督办通知")
        item.reply = _text(item.reply)
        if not item.reply:
            raise ValueError("答复内容必须填写")
        if item.replied_on is None:
            item.replied_on = beijing_today()
            item.replied_by = g.user.username

    def render_template(self, template: str, **kwargs: Any) -> Any:
        """The reply form shows the notice it answers (the edit page's `pk`)."""
        if template == self.edit_template:
            pk = (request.view_args or {}).get("pk")
            kwargs["notice"] = (self.datamodel.get(pk, self._base_filters)
                                if pk is not None else None)
        kwargs.setdefault("local_date", local_date)
        return super().render_template(template, **kwargs)


class ActionItemView(_NoAutoflush, SaveErrorMessages, ModelView):
    """议定事项: what a record decided or ordered, who answers for it and by when; closed with
    a date and a note. Added from the record's page (工作记录 → 显示) by the office."""

    datamodel = AddressedInterface(ActionItem)
    route_base = "/district/actions"
    om_roles = OFFICE_KEEPS
    base_permissions = list(OFFICE_KEEPS[DISTRICT_VIEWER])
    list_title = show_title = "议定事项"
    add_title = "新增议定事项"
    edit_title = "修改或办结议定事项"
    list_columns = ["record", "addressee", "text", "deadline", "status", "closed_on"]
    show_columns = ["record", "addressee", "text", "deadline", "status", "closed_on",
                    "closing_note"]
    add_columns = ["record", "tenant", "unit", "text", "deadline"]
    edit_columns = ["unit", "text", "deadline", "closed_on", "closing_note"]
    search_columns = ["record", "tenant", "unit", "text", "deadline", "closed_on"]
    add_form_query_rel_fields = _ACTIVE_TENANTS
    label_columns = {"record": "工作记录", "tenant": "责任办事处", "unit": "责任单位（其他）",
                     "addressee": "责任单位", "text": "议定事项或整改任务", "deadline": "办结时限",
                     "status": "办理情况", "closed_on": "办结日期", "closing_note": "办结情况"}
    description_columns = {
        "unit": "责任单位不是办事处时填写（如 供水公司、区住建局），与办事处二者选一",
        "closing_note": "办结时填写落实情况"}
    formatters_columns = {"deadline": local_date, "closed_on": local_date}
    base_order = ("deadline", "asc")

    def _check(self, item: ActionItem) -> None:
        item.text = _text(item.text)
        item.closing_note = _text(item.closing_note) or None
        if item.record is None:
            raise ValueError("请选择议定该事项的工作记录")
        if not item.text:
            raise ValueError("议定事项或整改任务必须填写")
        if item.deadline is None or item.deadline < item.record.held_on:
            raise ValueError("办结时限必须填写，且不能早于会议或督导的日期")
        if item.closed_on is not None:
            if not item.record.held_on <= item.closed_on <= beijing_today():
                raise ValueError("办结日期不能早于会议或督导的日期，也不能晚于今天")
            if not item.closing_note:
                raise ValueError("办结时须填写办结情况")

    def check_add(self, item: ActionItem) -> None:
        _addressee(item, "责任单位")
        item.closed_on = item.closing_note = None
        self._check(item)

    def check_update(self, item: ActionItem) -> None:
        item.unit = _text(item.unit) or None
        if item.tenant_id is not None and item.unit is not None:
            raise ValueError("该事项的责任单位是办事处，不能再填写其他单位")
        if item.tenant_id is None and item.unit is None:
            raise ValueError("责任单位必须填写")
        self._check(item)

