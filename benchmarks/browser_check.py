"""What the browser checks share: a page that records its console, and one verdict line per page."""

from __future__ import annotations

from typing import Any


def watched_page(browser: Any, width: int = 1200, height: int = 900) -> tuple[Any, list[str]]:
    """A new page and the list its console messages and page errors land in (``error: ...`` for errors)."""
    page = browser.new_page(viewport={"width": width, "height": height})
    messages: list[str] = []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: messages.append(f"error: {error}"))
    return page, messages


def verdict(label: str, messages: list[str]) -> bool:
    """Print ``label: ok|FAIL`` and every message; True when a message is an error."""
    errors = [m for m in messages if m.startswith("error")]
    print(f"{label}: {'FAIL' if errors else 'ok'}")
    for message in messages:
        print(f"  console {message}")
    return bool(errors)
