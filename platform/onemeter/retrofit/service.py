"""Taking a step of the procedure: check, apply, write the history row, call the hook."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy.orm import Session

from onemeter.formatting import BEIJING
from onemeter.retrofit.models import ProjectEvent, RetrofitProject
from onemeter.retrofit.procedure import UTILITY, Step, actor_of, fire
from onemeter.tenancy import TenantScope, current_scope, use_scope


def beijing_today() -> dt.date:
    """Today's date in Beijing: deadlines are calendar days of the sub-district."""
    return dt.datetime.now(dt.UTC).astimezone(BEIJING).date()


def _write_scope(session: Session, step: Step, project: RetrofitProject) -> Any:
    """The scope the step is written under.

    A utility's staff read every tenant and write none; once `fire` has checked that the
    user is staff of this project's utility, the step is written in the project's tenant
    (and only there), so the write guard and row-level security accept exactly this row.
    """
    scope = current_scope()
    if step.transition.actor == UTILITY and scope.write != project.tenant_id:
        return use_scope(TenantScope(read=scope.read, write=project.tenant_id,
                                     orm_enforced=scope.orm_enforced, utility=scope.utility,
                                     label=f"utility-step:{project.tenant_id}"), session)
    return contextlib.nullcontext()


def apply_transition(session: Session, project: RetrofitProject, transition: str, user: Any,
                     *, today: dt.date | None = None, now: dt.datetime | None = None,
                     plugin_manager: Any = None, **inputs: Any) -> ProjectEvent:
    """Fire `transition` on `project` as `user` with `inputs`, and record it.

    Checks state, role and inputs (`procedure.fire`; raises ProcedureRefused with the
    Chinese reason and changes nothing), writes a `ProjectEvent`, flushes, and calls the
    step's hook (`onemeter_project_referred_to_litigation` on 依法提起诉讼). The caller
    commits. `today` defaults to Beijing's date, `now` to naive UTC.
    """
    today = today or beijing_today()
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    actor = actor_of(user)
    step = fire(project, transition, actor, inputs, today=today, now=now)
    event = ProjectEvent(
        tenant_id=project.tenant_id, project=project, at=now, user_id=actor.user_id,
        actor=actor.name or None, transition=transition, from_state=step.from_state,
        to_state=step.to_state, comment=step.inputs.get("comment"),
        deadline=step.inputs.get("deadline"), document=step.inputs.get("document"),
        amount=step.inputs.get("amount"),
    )
    with _write_scope(session, step, project):
        session.add(event)
        session.flush()
        if step.transition.hook:
            pm = plugin_manager
            if pm is None and has_app_context():
                pm = current_app.extensions.get("onemeter_plugins")
            if pm is not None:
                community = project.community
                getattr(pm.hook, step.transition.hook)(
                    project_id=project.id, tenant_id=project.tenant_id,
                    developer_id=getattr(community, "developer_id", None))
    return event
