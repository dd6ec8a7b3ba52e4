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
