"""Figures a test wants printed at the end of the run (conftest prints them)."""

LINES: list[str] = []


def add(line: str) -> None:
    LINES.append(line)
