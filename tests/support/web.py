"""Signing in through the real login form, and reading what a page shows."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

EXTERNAL_URL = re.compile(r"""(?:src|href|action)\s*=\s*["']\s*(?:https?:)?//""", re.I)
CSS_EXTERNAL = re.compile(r"""url\(\s*["']?\s*(?:https?:)?//""", re.I)


def signed_in(app: Flask, username: str, password: str) -> FlaskClient:
    client = app.test_client()
    response = client.post("/login/", data={"username": username, "password": password})
    assert response.status_code == 302, f"login of {username} failed: {response.status_code}"
    assert "/login" not in response.headers.get("Location", ""), f"login of {username} refused"
    return client


def external_urls(html: str) -> list[str]:
    """Every place a page would load something from another host."""
    found = [m.group(0) for m in EXTERNAL_URL.finditer(html)]
    found += [m.group(0) for m in CSS_EXTERNAL.finditer(html)]
    return found


def api_headers(app: Flask, username: str, password: str) -> dict[str, str]:
    """Headers of a REST API client signed in the way API users are: FAB's JWT login."""
    response = app.test_client().post("/api/v1/security/login", json={
        "username": username, "password": password, "provider": "db"})
    assert response.status_code == 200, f"API login of {username}: {response.status_code}"
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}
