"""Screenshots of the running app (make run) in headless Chromium, for the docs.

Usage: python scripts/screenshots.py [base_url] [name,name…]   (needs `pip install -e
.[browser]` and Debian's chromium at /usr/bin/chromium; names pick some shots of SHOTS)
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
PASSWORD = "Pingqiao-2021"
SHOTS = [
    ("login", None, "/login/"),
    ("tenant-admin-home", "pingqiao_admin", "/"),
    ("tenant-admin-staff", "pingqiao_admin", "/tenantstaff/list/"),
    ("tenant-staff-jobs", "pingqiao_staff", "/jobs/list/?start-demo"),
    ("tenant-admin-changelog", "pingqiao_admin", "/changelog/list/"),
    ("tenant-staff-progress", "pingqiao_staff", "/retrofit/progress/"),
    ("tenant-staff-project", "pingqiao_staff", "/retrofit/progress/?open-first"),
    ("water-project", "water", "/retrofit/progress/?open-awaiting"),
    ("tenant-staff-charges", "pingqiao_staff", "/retrofit/charges/list/"),
    ("tenant-staff-accounts", "pingqiao_staff", "/registry/accounts/list/"),
    ("district-home", "district", "/"),
    ("district-progress", "district", "/retrofit/progress/"),
    ("admin-tenants", "admin", "/tenants/list/"),
    ("district-dashboard", "district", "/district/"),
    ("district-overdue", "district", "/district/overdue/"),
    ("district-ranking", "district", "/district/ranking/"),
    ("district-bulletins", "district", "/district/bulletins/?publish"),
    ("district-notices", "district", "/district/notices/list/"),
    ("tenant-notice-reply", "pingqiao_staff", "/supervision/notices/list/?open-reply"),
]
ONLY = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else None
#: Pages shot whole, not only the first screen (the dashboard's charts are below its tables).
FULL_PAGE = {"district-dashboard"}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        contexts: dict = {}  # one signed-in browser per user: logins are rate-limited
        for name, user, path in SHOTS:
            if ONLY is not None and name not in ONLY:
                continue
            if user not in contexts:
                context = browser.new_context(viewport={"width": 1280, "height": 760},
                                              locale="zh-CN")
                if user:
                    login = context.new_page()
                    login.goto(f"{BASE}/login/")
                    login.fill("input[name=username]", user)
                    login.fill("input[name=password]", PASSWORD)
                    login.click("input[type=submit], button[type=submit]")
                    login.wait_for_load_state("networkidle")
                    login.close()
                contexts[user] = context
            page = contexts[user].new_page()
            page.goto(f"{BASE}{path.split('?')[0]}")
            page.wait_for_load_state("networkidle")
            if path.endswith("?start-demo"):  # start the demo job and let the worker finish it
                page.click("text=运行演示任务")
                page.wait_for_timeout(6000)
                page.goto(f"{BASE}{path.split('?')[0]}")
                page.wait_for_load_state("networkidle")
            if path.endswith("?open-first"):  # the first (most overdue) project's page
                page.click("table.om-progress tbody tr:first-child td:nth-child(6) a")
                page.wait_for_load_state("networkidle")
            if path.endswith("?open-awaiting"):  # a project waiting for the utility's inspection
                page.click("table.om-progress a:has-text('待专营单位查验')")
                page.wait_for_load_state("networkidle")
            if path.endswith("?open-reply"):  # the reply form of the first notice listed
                page.click("a[href*='/supervision/notices/edit/']")
                page.wait_for_load_state("networkidle")
            if path.endswith("?publish"):  # publish this month's bulletin, then show the list
                page.click("text=发布该月通报")
                page.wait_for_load_state("networkidle")
            page.screenshot(path=str(OUT / f"{name}.png"), full_page=name.endswith("project") or name in FULL_PAGE)
            page.close()
        for context in contexts.values():
            context.close()
        browser.close()
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    main()
