"""Tenant isolation, proven over every registered page and API, for every verb.

The matrix is generated from what is registered (core and plugins, present and future):
no view or model is named here. Each run also checks positive controls (a user reaches
their own tenant's rows where the role allows), so a matrix that sees nothing at all fails.
"""

from __future__ import annotations

import pytest
from flask import Flask

from tests.support import report
from tests.support.matrix import Matrix, discover, seed

#: (user, their tenant, the tenant whose rows they must never reach)
PAIRS = [("pingqiao_admin", "pingqiao", "pingxi"),
         ("pingqiao_staff", "pingqiao", "pingxi"),
         ("pingxi_admin", "pingxi", "pingqiao")]


def run_matrix(app: Flask, tenant_ids: dict[str, int], label: str, strict: bool = True
               ) -> Matrix:
    targets = discover(app)
    models = {t.model for t in targets if t.model is not None}
    rows = seed(app, models, [tenant_ids["pingqiao"], tenant_ids["pingxi"]])
    matrix = Matrix(app, rows, strict=strict)
    for username, own, other in PAIRS:
        matrix.run(username, tenant_ids[own], tenant_ids[other])
    total = sum(matrix.cases.values())
    report.add(f"access matrix ({label}): {total} cases over {len(targets)} views/APIs "
               f"× {len(PAIRS)} users, {sum(matrix.controls.values())} positive controls, "
               f"{len(matrix.leaks)} leaks")
    return matrix


def test_matrix_covers_core_and_plugin_views_without_naming_them(app: Flask) -> None:
    names = {t.name for t in discover(app)}
    # The example plugin's pages and APIs are found through registration alone.
    assert {"ChecklistView", "ChecklistItemView", "ChecklistApi", "ChecklistItemApi"} <= names
    assert {"JobRunView", "ChangeLogView", "TenantStaffView"} <= names
    # Report pages are covered once they list their URLs in om_matrix_pages.
    assert {"DistrictRollupView", "DistrictOverdueView", "DistrictRankingView"} <= names
    # 督办: the office's pages and the sub-district's own, over tenant-owned rows.
    assert {"SupervisionNoticeView", "NoticeReplyView", "ActionItemView"} <= names


def test_no_user_of_one_sub_district_reaches_another_through_any_page_or_api(
        app: Flask, tenant_ids: dict[str, int]) -> None:
    matrix = run_matrix(app, tenant_ids, "all layers")
    assert not matrix.leaks, "\n".join(matrix.leaks)
    verbs = {verb for _, verb in matrix.cases}
    assert {"list", "show", "edit-form", "edit-post", "delete", "add-foreign-ref", "filter",
            "add-form-choices", "export", "api-list", "api-get", "api-put", "api-delete",
            "api-related-choices", "api-post-foreign-ref", "page"} <= verbs
    assert matrix.controls["list"] > 0 and matrix.controls["api-list"] > 0
    assert matrix.controls["page"] > 0


@pytest.mark.postgres
def test_row_level_security_alone_keeps_sub_districts_apart(
        make_app, app: Flask, tenant_ids: dict[str, int]) -> None:
    """The ORM read filter and the write guard switched off: PostgreSQL RLS must hold."""
    bare = make_app(ONEMETER_ORM_ISOLATION=False)
    matrix = run_matrix(bare, tenant_ids, "RLS alone, ORM layers off")
    assert not matrix.leaks, "\n".join(matrix.leaks)
    assert matrix.controls["list"] > 0


@pytest.mark.postgres
def test_matrix_catches_leaks_when_every_isolation_layer_is_bypassed(
        make_app, app: Flask, tenant_ids: dict[str, int], stack) -> None:
    """Self-test: connected as the superuser (RLS bypassed) with the ORM layers off, the same
    matrix must report leaks on reads and writes — so its silence above means something."""
    broken = make_app(ONEMETER_ORM_ISOLATION=False, SQLALCHEMY_DATABASE_URI=stack.owner_url)
    matrix = run_matrix(broken, tenant_ids, "self-test, isolation bypassed", strict=False)
    leaked_verbs = {leak.split(" ")[1] for leak in matrix.leaks}
    assert {"list", "show", "export", "delete", "api-list", "api-delete"} <= leaked_verbs
