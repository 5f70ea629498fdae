"""Debian's headless Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Screenshots land here (kept out of git); SYNDIC_ARTIFACTS moves them.
ARTIFACTS = Path(os.environ.get("SYNDIC_ARTIFACTS", "tmp/artifacts")) / "console"
# Generous on a loaded 2-core machine; a working page answers in well under 1 s.
WAIT_MS = 15_000


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium (Debian's chromium package) not installed")


@dataclass
class PageErrors:
    """Console errors and uncaught exceptions a page reported."""

    messages: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@asynccontextmanager
async def browser_page(base_url: str) -> AsyncIterator[tuple[object, PageErrors]]:
    require_chromium()
    from playwright.async_api import async_playwright

    errors = PageErrors()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(
                base_url=base_url, viewport={"width": 1280, "height": 900}
            )
            page.set_default_timeout(WAIT_MS)
            page.on(
                "console",
                lambda msg: errors.messages.append(msg.text) if msg.type == "error" else None,
            )
            page.on("pageerror", lambda exc: errors.messages.append(str(exc)))

            async def on_dialog(dialog: object) -> None:
                errors.dialogs.append(dialog.message)  # type: ignore[attr-defined]
                await dialog.dismiss()  # type: ignore[attr-defined]

            page.on("dialog", on_dialog)
            yield page, errors
        finally:
            await browser.close()


async def screenshot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path
