"""Error pages in Chinese, inside the app's layout, and 数据库正忙 for a request that waited
too long behind another writer.

Flask's own pages are English ("Not Found", "Request Entity Too Large", "Internal Server
Error"); a sub-district clerk who uploads a file over the size limit, follows a stale link or
saves while an import writes the same rows reads here what happened and what to do. A request
under /api/ gets the same text as JSON. The pages load nothing from outside the app.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any

from flask import (
    Flask,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    render_template,
    request,
    session,
)
from flask_appbuilder.exceptions import DatabaseException
from flask_appbuilder.urltools import get_order_args, get_page_args, get_page_size_args
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from werkzeug.exceptions import HTTPException, InternalServerError

from onemeter.database import db

#: Title and text per status code when the error brings no text of its own.
MESSAGES: dict[int, tuple[str, str]] = {
    400: ("请求有误", "提交的内容无法处理，请返回检查后重试。"),
    401: ("请先登录", "请登录后再访问此页面。"),
    403: ("无权访问", "您的账号无权查看或修改此内容。如需权限，请联系本单位管理员。"),
    404: ("页面不存在", "要访问的页面或记录不存在，或不属于您所在的办事处。"),
    405: ("操作方式不正确", "此页面不支持这种操作方式，请从页面上的按钮或链接进入。"),
    413: ("文件太大", "上传的文件超过了 {limit} 的上限。请拆分台账或删去多余的工作表后再上传。"),
    429: ("操作过于频繁", "请求过于频繁，请稍后再试。"),
    500: ("系统出错", "处理请求时出错，本次操作没有完成。请稍后重试；如仍出错，请联系管理员"
                      "并告知请求编号。"),
    503: ("数据库正忙", "另一项操作（如台账导入或回滚）正在写入这些数据，本次修改没有保存。"
                      "请稍等片刻后重试。"),
}

#: SQLSTATEs of PostgreSQL's lock waits that gave up: lock_not_available (lock_timeout),
#: deadlock_detected, serialization_failure.
_BUSY_SQLSTATES = {"55P03", "40P01", "40001"}

#: Seconds the busy answer tells a client to wait (Retry-After).
RETRY_AFTER = 30


def database_busy(exc: BaseException | None) -> bool:
    """Whether `exc` is a database lock wait that gave up (SQLite "database is locked",
    PostgreSQL lock timeout, deadlock or serialization failure): the request's transaction
    was rolled back and the same request may succeed later."""
    if not isinstance(exc, DBAPIError):
        return False
    original = exc.orig
    if getattr(original, "sqlstate", None) in _BUSY_SQLSTATES:
        return True
    text = str(original).lower()
    return "database is locked" in text or "database table is locked" in text


#: The flash of a save that failed in the database (FAB's add/edit/delete catch the error
#: and flash their view's `database_error_message`, "Database Error", then redirect).
SAVE_FAILED = "保存失败：数据库出错，本次修改没有保存。请稍后重试；如仍出错，请联系管理员。"
#: A unique or foreign key (or check) the row broke, said without the key's values.
SAVE_CONFLICT = ("保存失败：与已有记录重复（如同一住户重复登记），或引用的记录不存在，"
                 "本次修改没有保存。请检查后重试。")


def save_failed_text(exc: BaseException | None) -> str:
    """What a clerk reads when a save failed in the database: 数据库正忙 when it waited too
    long behind another writer, 与已有记录重复 when it broke a key, otherwise that the
    database refused it (never the SQL, which carries the row's values)."""
    causes = (exc, getattr(exc, "__cause__", None))
    if any(database_busy(cause) for cause in causes):
        return f"{MESSAGES[503][0]}：{MESSAGES[503][1]}"
    if any(isinstance(cause, IntegrityError) for cause in causes):
        return SAVE_CONFLICT
    return SAVE_FAILED


class SaveRefused(DatabaseException, ValueError):
    """A database error in a view's save, said in Chinese (FAB flashes the text of what
    pre_add/pre_update/pre_delete and the add itself raise; its REST API answers a
    DatabaseException through `response_422`, see ApiSaveErrors)."""


def _explained(hook: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(hook)
    def run(self: Any, item: Any) -> Any:
        try:
            return hook(self, item)
        except SQLAlchemyError as exc:
            current_app.logger.warning("save refused in %s: %s", hook.__qualname__, exc)
            db.session.rollback()
            raise SaveRefused(save_failed_text(exc)) from exc
    return run


@contextlib.contextmanager
def _said_in_chinese() -> Iterator[None]:
    """A database error raised inside leaves as SaveRefused with `save_failed_text`: the
    driver's own (an add) or FAB's DatabaseException around it (an edit or delete)."""
    try:
        yield
    except SaveRefused:
        raise
    except DatabaseException as exc:
        raise SaveRefused(save_failed_text(exc)) from (exc.__cause__ or exc)
    except SQLAlchemyError as exc:
        raise SaveRefused(save_failed_text(exc)) from exc


class _ExplainedWrites:
    """Mixed into a view's data interface: FAB flashes `str()` of whatever the interface's
    add or delete raises — for an add the SQL with the row's values (phone and ID numbers
    included), for a delete an empty DatabaseException — so the error leaves here in
    Chinese (a SaveRefused, which is a DatabaseException: FAB's REST API and `_edit` treat
    it as theirs)."""

    def add(self, item: Any, commit: bool = True) -> None:
        with _said_in_chinese():
            super().add(item, commit)  # type: ignore[misc]

    def edit(self, item: Any, commit: bool = True) -> None:
        with _said_in_chinese():
            super().edit(item, commit)  # type: ignore[misc]

    def delete(self, item: Any, commit: bool = True) -> None:
        with _said_in_chinese():
            super().delete(item, commit)  # type: ignore[misc]


_EXPLAINED_INTERFACES: dict[type, type] = {}


def _explain_writes(datamodel: Any) -> None:
    """Give `datamodel` (a view's SQLAInterface) the Chinese errors of `_ExplainedWrites`,
    once (at view registration)."""
    cls = type(datamodel)
    if issubclass(cls, _ExplainedWrites):
        return
    explained = _EXPLAINED_INTERFACES.get(cls)
    if explained is None:
        explained = _EXPLAINED_INTERFACES[cls] = type(cls.__name__, (_ExplainedWrites, cls), {})
    datamodel.__class__ = explained


#: The flash of a save that went through when what runs after it (a post_* hook: start a
#: recomputation, say) failed.
AFTER_SAVE_FAILED = ("已保存。但保存后的后续处理（如重新测算）没有完成，请刷新页面查看；"
                     "如有需要，请联系管理员。")


def _after_save(hook: Callable[..., Any]) -> Callable[..., Any]:
    """A post_add/post_update/post_delete that fails must not make FAB report the committed
    save as failed (or show the form again, for a second submit to save twice)."""
    @functools.wraps(hook)
    def run(self: Any, item: Any) -> Any:
        try:
            return hook(self, item)
        except Exception:
            current_app.logger.exception("%s failed after the save", hook.__qualname__)
            db.session.rollback()
            flash(AFTER_SAVE_FAILED, "warning")
            return None
    return run


def _flash_count() -> int:
    return len(session.get("_flashes", ()))


def _refused_since(count: int) -> bool:
    """Whether the flashes added since there were `count` say a save was refused: FAB
    flashes "success" for a save that went through, anything else when a pre_* hook or the
    database refused it."""
    added = session.get("_flashes", [])[count:]
    return bool(added) and all(category != "success" for category, _ in added)


class SaveErrorMessages:
    """Mixin for ModelViews: a failed add, edit or delete says in Chinese what happened —
    数据库正忙 when the save waited too long behind another writer (an import writing the
    same rows), otherwise that the database refused it — and a refused add or edit shows
    the form again with what the clerk typed, not FAB's redirect to the list.

    FAB catches each kind of failure and flashes a text: for an edit its view's
    `database_error_message` ("Database Error"), evaluated inside its `except` block, so the
    exception being handled is at hand here; for an add or delete, `str()` of the error (the
    SQL and values, or nothing), so the view's data interface raises SaveRefused instead; for
    the pre_* hooks the text of what they raised — the SQL of an autoflush that hit a lock —
    so every pre_* hook a subclass has is wrapped to raise SaveRefused instead. A post_* hook
    that fails after the commit flashes AFTER_SAVE_FAILED and lets FAB report the save."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for names, wrap in ((("pre_add", "pre_update", "pre_delete"), _explained),
                            (("post_add", "post_update", "post_delete"), _after_save)):
            for name in names:
                hook = getattr(cls, name, None)
                if hook is not None and not getattr(hook, "__wrapped__", None):
                    setattr(cls, name, wrap(hook))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _explain_writes(self.datamodel)  # type: ignore[attr-defined]

    @property
    def database_error_message(self) -> str:
        return save_failed_text(sys.exc_info()[1])

    def _add(self) -> Any:
        count = _flash_count()
        widgets = super()._add()  # type: ignore[misc]
        if widgets is not None or not _refused_since(count):
            return widgets
        view: Any = self
        # What pre_add changed must not be flushed by the form's option queries.
        view.datamodel.session.rollback()
        exclude_cols = view._filters.get_relation_cols()
        form = view.add_form.refresh()  # bound to the posted form
        view._fill_form_exclude_cols(exclude_cols, form)
        return view._get_add_widget(form=form, exclude_cols=exclude_cols)

    def _edit(self, pk: Any) -> Any:
        count = _flash_count()
        widgets = super()._edit(pk)  # type: ignore[misc]
        if widgets is not None or not _refused_since(count):
            return widgets
        view: Any = self
        view.datamodel.session.rollback()  # the refused changes, populated into the row
        item = view.datamodel.get(pk, view._base_filters)
        if item is None:  # gone meanwhile: the list, with the flash
            return None
        exclude_cols = view._filters.get_relation_cols()
        form = view.edit_form.refresh(request.form)
        view._fill_form_exclude_cols(exclude_cols, form)
        form._id = view.datamodel.get_pk_value(item)
        widgets = view._get_edit_widget(form=form, exclude_cols=exclude_cols)
        return view._get_related_views_widgets(
            item, filters={}, orders=get_order_args(), pages=get_page_args(),
            page_sizes=get_page_size_args(), widgets=widgets)


class ApiSaveErrors:
    """Mixin for ModelRestApis: a write the database refused answers in Chinese — 503 with
    Retry-After for 数据库正忙, else 422 — instead of FAB's 422 "Database exception
    occurred: " with the driver's text (the SQL and the row's values), or its 500 "Fatal
    error" for an add."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _explain_writes(self.datamodel)  # type: ignore[attr-defined]

    def response_422(self, message: Any = None) -> Response:
        # FAB calls this inside its `except DatabaseException` block: the error is at hand.
        exc = sys.exc_info()[1]
        if not isinstance(exc, DatabaseException):
            return super().response_422(message)  # type: ignore[misc]
        current_app.logger.warning("API save refused: %s", exc.__cause__ or exc)
        busy = database_busy(exc.__cause__)
        response = self.response(503 if busy else 422,  # type: ignore[attr-defined]
                                 message=save_failed_text(exc))
        if busy:
            response.headers["Retry-After"] = str(RETRY_AFTER)
        return response


def _size(limit: int | None) -> str:
    if not limit:
        return "允许"
    return f"{limit / (1024 * 1024):g} MB" if limit >= 1024 * 1024 else f"{limit / 1024:g} KB"


def _answer(code: int, text: str | None = None, headers: dict[str, str] | None = None
            ) -> Response | tuple[Any, int, dict[str, str]]:
    title, default = MESSAGES.get(code, MESSAGES[500 if code >= 500 else 400])
    text = text or default.format(limit=_size(current_app.config.get("MAX_CONTENT_LENGTH")))
    request_id = getattr(g, "request_id", "")
    headers = dict(headers or {})
    if request.path.startswith("/api/") or (
            request.accept_mimetypes.best == "application/json"):
        return jsonify(message=f"{title}：{text}", request_id=request_id), code, headers
    try:
        db.session.rollback()  # a failed transaction must not break the layout's queries
        if not hasattr(g, "user"):  # an error before FAB's before_request set it
            g.user = current_user
        appbuilder = current_app.appbuilder  # type: ignore[attr-defined]
        body = render_template("onemeter/error.html", base_template=appbuilder.base_template,
                               appbuilder=appbuilder, code=code, title=title, text=text,
                               request_id=request_id)
    except Exception:  # the layout itself failed (the database is down): a bare page
        current_app.logger.exception("error page layout failed")
        body = render_template("onemeter/error_bare.html", code=code, title=title, text=text,
                               request_id=request_id)
    return body, code, headers


def register_error_pages(app: Flask) -> None:
    """Answer every HTTP error and unhandled exception of `app` in Chinese (see module doc).
    Called once by create_app."""

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> Any:
        # An upload over MAX_CONTENT_LENGTH reaches the CSRF check with an empty form (the
        # body is not parsed): it is the size that is wrong, not the form.
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        if limit and (request.content_length or 0) > limit:
            return _answer(413)
        return _answer(400, "表单已过期或无效，本次提交没有保存。请返回、刷新页面后重新提交。")

    @app.errorhandler(InternalServerError)
    def internal_error(exc: InternalServerError) -> Any:
        # Flask has logged the original exception before calling this.
        if database_busy(getattr(exc, "original_exception", None)):
            return _answer(503, headers={"Retry-After": str(RETRY_AFTER)})
        return _answer(500)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if exc.code is None or exc.code < 400:
            return exc  # routing redirects pass through
        own = exc.description if exc.description != type(exc).description else None
        if exc.code == 429:  # Flask-Limiter's text is the limit, in English
            own = None
        headers = {k: v for k, v in exc.get_headers() if k.lower() in ("retry-after", "allow")}
        return _answer(exc.code, own, headers)
