"""Recompute after a project's acceptance changes: noticed at flush, queued after the request.

A project enters (or leaves) the accepted state only through the procedure, which writes a
`ProjectEvent`; when a request flushes one, the sub-district is noted and, once the request's
own work is committed and its response is ready, one recomputation job is queued for it.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g, has_request_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from onemeter.retrofit.models import ProjectEvent
from onemeter_funding.award import ACCEPTED

_installed = False


def _note_acceptance(session: Session, flush_context: Any) -> None:
    if not has_request_context():
        return
    for obj in session.new:
        if isinstance(obj, ProjectEvent) and ACCEPTED in (obj.to_state, obj.from_state):
            g.setdefault("funding_recompute", set()).add(obj.tenant_id)


def install(app: Flask) -> None:
    """Watch flushes (once per process) and queue the noted recomputations after requests."""
    global _installed
    if not _installed:
        event.listen(Session, "after_flush", _note_acceptance)
        _installed = True

    @app.after_request
    def queue_recomputation(response: Any) -> Any:
        tenants = g.pop("funding_recompute", None)
        if not tenants or response.status_code >= 400:
            return response
        from onemeter.database import db
        from onemeter.tenancy import Tenant
        from onemeter_funding.service import PLUGIN
        from onemeter_funding.views import start_recompute

        db.session.rollback()  # anything the view left uncommitted is not ours to commit
        for tenant_id in sorted(tenants):
            tenant = db.session.get(Tenant, tenant_id)
            if tenant is not None and tenant.enables(PLUGIN):
                start_recompute(tenant_id, "改造项目接收状态变化")
        return response
