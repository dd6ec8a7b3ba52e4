"""The interface: Chinese by default, English on request, and nothing loaded from the internet.

Government intranets have no internet access: every page each role can reach, the sign-in
page and the API docs must load only the platform's own assets, and every one must exist.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.web import external_urls

ROLE_USERS = ["admin", "district", "finance", "water", "pingqiao_admin", "pingqiao_staff",
              "pingxi_admin", "pingxi_staff", "orphan"]
PAGES = ["/", "/jobs/list/", "/changelog/list/", "/tenantstaff/list/",
         "/example/checklists/list/"]
#: Links a crawl must not follow: they sign out or switch the language.
NOT_FOLLOWED = re.compile(r"^/(logout|lang)/?")

LOCAL_ASSET = re.compile(
    r"""(?:src|href)\s*=\s*["'](/(?:static|appbuilder|om-static)/[^"'?#]+)""", re.I)
LOCAL_LINK = re.compile(r"""href\s*=\s*["'](/[^"'#]*)["']""", re.I)
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)["']?\s*\)""", re.I)


def page(client: FlaskClient, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


def menu_links(html: str) -> set[str]:
    """Pages linked from the navigation bar (static files and sign-out left out)."""
    navbar = html.split('class="navbar', 1)[-1].split("</nav>", 1)[0]
    return {link for link in LOCAL_LINK.findall(navbar)
            if not LOCAL_ASSET.search(f'href="{link}"') and not NOT_FOLLOWED.match(link)}


def crawl(client: FlaskClient, urls: set[str]) -> Iterator[tuple[str, str]]:
    """(url, html) of every page in `urls` the client may open (others are skipped)."""
    for url in sorted(urls):
        response = client.get(url)
        if response.status_code == 200 and response.mimetype == "text/html":
            yield url, response.get_data(as_text=True)


class Assets:
    """Each referenced local asset fetched once per run, with the files its CSS refers to."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.checked: dict[str, int] = {}

    def check(self, html: str, where: str) -> list[str]:
        problems = []
        for path in set(LOCAL_ASSET.findall(html)):
            problems += self._fetch(path, where)
        return problems

    def _fetch(self, path: str, where: str) -> list[str]:
        if path in self.checked:
            return [] if self.checked[path] == 200 else [f"{where} → {path}: {self.checked[path]}"]
        response = self.client.get(path)
        self.checked[path] = response.status_code
        if response.status_code != 200:
            return [f"{where} → {path}: {response.status_code}"]
        problems = []
        if path.endswith(".css"):
            css = response.get_data(as_text=True)
            problems += [f"{path} loads {u}" for u in external_urls(css)]
            for ref in CSS_URL.findall(css):
                if ref.startswith(("data:", "#")) or re.match(r"(https?:)?//", ref):
                    continue
                target = posixpath.normpath(posixpath.join(posixpath.dirname(path),
                                                           ref.split("?")[0].split("#")[0]))
                problems += self._fetch(target, path)
        return problems


@pytest.fixture(scope="module")
def assets(app: Flask) -> Assets:
    return Assets(app.test_client())


# --- language -------------------------------------------------------------------------------


def test_sign_in_page_is_in_chinese_by_default(app: Flask) -> None:
    html = page(app.test_client(), "/login/")
    assert "用户名" in html and "登录" in html
    assert 'lang="zh' in html or "一户一表" in html


def test_sign_in_page_switches_to_english_and_back(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/lang/en").status_code == 302
    english = page(client, "/login/")
    assert "Username" in english and "Password" in english and "用户名" not in english

    client.get("/lang/zh")
    assert "用户名" in page(client, "/login/")


def test_signed_in_pages_follow_the_chosen_language(login: Callable[[str], FlaskClient]) -> None:
    client = login("pingqiao_staff")
    assert "检查清单" in page(client, "/example/checklists/list/")
    assert "新增" in page(client, "/example/checklists/list/") or \
        "添加" in page(client, "/example/checklists/list/")
    client.get("/lang/en")
    listing = page(client, "/example/checklists/list/")
    assert "Add" in listing or "Record Count" in listing or "Search" in listing


# --- nothing from the internet --------------------------------------------------------------


def test_sign_in_page_loads_nothing_external_and_all_its_assets_exist(
        app: Flask, assets: Assets) -> None:
    html = page(app.test_client(), "/login/")
    assert external_urls(html) == []
    assert LOCAL_ASSET.search(html)
    assert assets.check(html, "/login/") == []


@pytest.mark.parametrize("username", ROLE_USERS)
def test_every_page_a_role_reaches_loads_nothing_external_and_all_assets_exist(
        login: Callable[[str], FlaskClient], assets: Assets, username: str) -> None:
    client = login(username)
    home = page(client, "/")
    urls = set(PAGES) | menu_links(home) | {"/users/userinfo/"}

    visited, problems = [], []
    for url, html in crawl(client, urls):
        visited.append(url)
        problems += [f"{url} loads {found}" for found in external_urls(html)]
        problems += assets.check(html, url)

    assert "/" in visited and "/users/userinfo/" in visited
    assert menu_links(home) <= set(visited), "a menu entry leads to a page the user cannot open"
    assert problems == []


def test_menus_of_cross_tenant_and_tenant_roles_are_crawled(
        login: Callable[[str], FlaskClient]) -> None:
    """The crawl above is only worth something if the menus have entries to follow."""
    assert {"/example/checklists/list/", "/jobs/list/"} <= menu_links(
        page(login("pingqiao_staff"), "/"))
    assert {"/tenantstaff/list/", "/changelog/list/"} <= menu_links(
        page(login("pingqiao_admin"), "/"))
    assert {"/tenants/list/", "/changelog/list/"} <= menu_links(page(login("district"), "/"))
    assert {"/users/list/", "/roles/list/"} <= menu_links(page(login("admin"), "/"))


def test_api_docs_load_nothing_external_and_never_call_the_online_validator(
        login: Callable[[str], FlaskClient], assets: Assets) -> None:
    client = login("admin")
    html = page(client, "/swagger/v1")

    assert external_urls(html) == []
    assert "swagger-ui-bundle.js" in html
    assert "validatorUrl: null" in html
    assert assets.check(html, "/swagger/v1") == []
    spec = client.get("/api/v1/_openapi")
    assert spec.status_code == 200
    assert "/example_checklist/" in str(spec.get_json()["paths"])


@pytest.mark.parametrize("username", ["pingqiao_staff", "district"])
def test_api_docs_are_the_platform_admins(login: Callable[[str], FlaskClient],
                                          username: str) -> None:
    assert login(username).get("/swagger/v1").status_code in (302, 403)
