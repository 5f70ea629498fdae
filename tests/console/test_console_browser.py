"""The console in Debian's headless Chromium: every page loads with no console
error, values are rendered as text, actions change the store, auth narrows
what a user sees. Screenshots are kept under tmp/artifacts/console."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from syndic.api.gen import rpc_pb2
from syndic.api.services import make_stub
from syndic.client import Client
from syndic.console.routes import STATIC_FILES
from syndic.registry.keys import KeyLayout
from syndic.registry.model import Instance
from syndic.registry.store import RegistryStore
from tests.console.browser import browser_page, screenshot
from tests.console.member import enable_auth, get, put, running_member

# No "/" in it, so the key browser lists it at the top level rather than as a folder.
HOSTILE_KEY = "<script>alert('key')<\\script>"
HOSTILE_VALUE = "<img src=x onerror=alert('value')>"
VIEWS = (
    "cluster",
    "keys",
    "leases",
    "services",
    "config",
    "traffic",
    "metrics",
    "alerts",
    "debug",
)


async def test_every_page_loads_without_errors_and_renders_values_as_text(
    tmp_path: Path,
) -> None:
    async with running_member(tmp_path) as member:
        await put(member, HOSTILE_KEY, HOSTILE_VALUE)
        await put(member, "app/db/url", "postgres://db")
        await put(member, "app/db/url", "postgres://db2")
        async with member.channel() as ch:
            await make_stub(ch, "etcdserverpb.Lease").LeaseGrant(
                rpc_pb2.LeaseGrantRequest(TTL=600), timeout=10
            )
        for _ in range(3):
            await member.obs.sample_now()
            await asyncio.sleep(0.05)
        async with browser_page(member.admin_url) as (page, errors):
            for view in VIEWS:
                await page.goto(f"/ui#{view}")
                await page.wait_for_selector(f"#view-{view}:not([hidden])")
                await page.wait_for_load_state("networkidle")
                await screenshot(page, view)
            # First screen: the leader.
            await page.goto("/ui#cluster")
            leader = page.locator("#cluster-summary .card").first
            await leader.locator(".value").wait_for()
            assert await leader.locator(".value").inner_text() == f"{member.server.node.id:x}"
            # The hostile key and value are shown as text, and nothing ran.
            await page.goto("/ui#keys")
            cell = page.locator("#keys-table button.key", has_text=HOSTILE_KEY)
            await cell.wait_for()
            assert await cell.inner_text() == HOSTILE_KEY
            assert await page.locator("#keys-table td", has_text=HOSTILE_VALUE).count() == 1
            assert await page.locator("#keys-table script, #keys-table img").count() == 0
            # Revisions of a key, newest first.
            await page.locator("#keys-folders button", has_text="app/").click()
            await page.locator("#keys-folders button", has_text="app/db/").click()
            await page.locator("#keys-table button.key", has_text="app/db/url").click()
            rows = page.locator("#rev-table tbody tr")
            await rows.nth(1).wait_for()
            assert await rows.nth(0).locator("td").nth(2).inner_text() == "postgres://db2"
            assert await rows.nth(1).locator("td").nth(2).inner_text() == "postgres://db"
            await screenshot(page, "keys-revisions")
            # Leases and charts drew something.
            await page.goto("/ui#leases")
            await page.locator("#leases-table tbody tr").first.wait_for()
            await page.goto("/ui#metrics")
            await page.locator("#metrics-charts svg polyline").first.wait_for(state="attached")
            assert await page.locator("#metrics-charts .chart").count() >= 5
        assert errors.messages == []
        assert errors.dialogs == []


async def test_put_delete_and_live_watch_change_and_follow_the_store(tmp_path: Path) -> None:
    async with running_member(tmp_path) as member:
        async with browser_page(member.admin_url) as (page, errors):
            await page.goto("/ui#keys")
            await put(member, "live/listed", "0")
            await page.fill("#keys-prefix", "live/")
            await page.click("#keys-go")
            await page.locator("#keys-table button.key", has_text="live/listed").wait_for()
            # A change between the listing and the watch is shown: the watch
            # starts just after the listing's revision.
            await put(member, "live/early", "0")
            await page.click("#keys-watch")
            await page.locator("#watch-status", has_text="watching live/").wait_for()
            await page.locator("#watch-events li", has_text="PUT live/early = 0").wait_for()
            await put(member, "live/x", "1")
            await page.locator("#watch-events li", has_text="PUT live/x = 1").wait_for()
            await page.fill("#put-form input[name=key]", "live/from-console")
            await page.fill("#put-form input[name=value]", "<b>bold</b>")
            await page.click("#put-form button")
            await page.locator("#keys-table button.key", has_text="live/from-console").wait_for()
            assert await get(member, "live/from-console") == [b"<b>bold</b>"]
            await page.locator(
                "#watch-events li", has_text="PUT live/from-console = <b>bold</b>"
            ).wait_for()
            await screenshot(page, "keys-watch")
            row = page.locator("#keys-table tr", has_text="live/x")
            await row.locator("button.delete").click()
            await page.locator("#watch-events li", has_text="DELETE live/x").wait_for()
            assert await get(member, "live/x") == []
        assert errors.messages == []


async def test_register_from_the_console_lists_the_instance_and_deregister_removes_it(
    tmp_path: Path,
) -> None:
    async with running_member(tmp_path) as member:
        async with browser_page(member.admin_url) as (page, errors):
            await page.goto("/ui#services")
            await page.fill("#register-form input[name=service]", "web")
            await page.fill("#register-form input[name=instance_id]", "web-1")
            await page.fill("#register-form input[name=address]", "10.0.0.7")
            await page.fill("#register-form input[name=port]", "8080")
            await page.click("#register-form button")
            row = page.locator("#services-table tbody tr", has_text="web-1")
            await row.wait_for()
            # The registration's TTL check starts critical, as Consul's does.
            assert "console-ttl: critical" in await row.inner_text()
            assert "10.0.0.7:8080" in await row.inner_text()
            stored = await get(member, "syndic/registry/svc/default/web/inst/web-1")
            assert len(stored) == 1 and b"10.0.0.7" in stored[0]
            await screenshot(page, "services")
            # A bad registration is refused with the registry's reason.
            await page.fill("#register-form input[name=instance_id]", "bad/id")
            await page.click("#register-form button")
            await page.wait_for_selector("#error:not([hidden])")
            assert "400" in await page.inner_text("#error")
            await row.locator("button.deregister").click()
            await row.wait_for(state="detached")
            assert await get(member, "syndic/registry/svc/default/web/inst/web-1") == []
        unexpected = [m for m in errors.messages if "400" not in m]
        assert unexpected == []


async def publish_from_console(page: Any, data_id: str, content: str) -> None:
    await page.fill("#publish-form input[name=data_id]", data_id)
    await page.fill("#publish-form textarea[name=content]", content)
    await page.click("#publish-form button")


async def test_config_publish_history_diff_rollback_gray_and_promote(tmp_path: Path) -> None:
    async with running_member(tmp_path) as member:
        async with browser_page(member.admin_url) as (page, errors):
            await page.goto("/ui#config")
            await publish_from_console(page, "app.conf", "port=1\nmode=a")
            await page.locator("#config-ids button", has_text="DEFAULT_GROUP/app.conf").wait_for()
            await page.locator("#config-version", has_text="1").wait_for()
            await publish_from_console(page, "app.conf", "port=2\nmode=a")
            history = page.locator("#config-history tbody tr")
            await history.nth(1).wait_for()
            assert await page.inner_text("#config-content") == "port=2\nmode=a"
            # Diff version 1 against version 2: one line out, one in.
            await page.select_option("#diff-a", "1")
            await page.select_option("#diff-b", "2")
            await page.click("#diff-go")
            assert await page.locator("#config-diff .diff-del").all_inner_texts() == ["- port=1"]
            assert await page.locator("#config-diff .diff-add").all_inner_texts() == ["+ port=2"]
            await screenshot(page, "config-diff")
            # Roll back to version 1: a new version 3 with version 1's content.
            await history.filter(has_text="port=1").locator("button.rollback").click()
            await page.locator("#config-version", has_text="3").wait_for()
            assert await page.inner_text("#config-content") == "port=1\nmode=a"
            # Gray release to zone=b, then promote it.
            await page.fill("#gray-form input[name=name]", "canary")
            await page.fill("#gray-form input[name=label]", "zone=b")
            await page.fill("#gray-form textarea[name=content]", "port=9")
            await page.click("#gray-form button")
            gray_row = history.filter(has_text="canary").first
            await gray_row.locator("button.promote").wait_for()
            assert await page.inner_text("#config-content") == "port=1\nmode=a"
            await gray_row.locator("button.promote").click()
            await page.locator("#config-content", has_text="port=9").wait_for()
            await screenshot(page, "config-promoted")
        assert errors.messages == []
        history_url = "/v1/config/public/DEFAULT_GROUP/app.conf/history"
        async with aiohttp.ClientSession(member.admin_url) as http, http.get(history_url) as resp:
            kinds = [e["kind"] for e in await resp.json()]
        assert "rollback" in kinds and "gray" in kinds


RULES = "name: inventory\nbreaker: {failure_ratio: 0.5, minimum_calls: 10}\n"


async def test_traffic_rules_are_listed_and_bad_rules_are_refused(tmp_path: Path) -> None:
    base = "/v1/config/public/orders/inventory.yaml"
    async with running_member(tmp_path) as member:
        async with aiohttp.ClientSession(member.admin_url) as http:
            async with http.put(f"{base}/settings", json={"traffic_rules": True}) as resp:
                assert resp.status == 200
            body = {"content": RULES, "format": "yaml", "expected_version": 0, "author": "t"}
            async with http.put(base, json=body) as resp:
                assert resp.status == 200
            async with http.put(
                "/v1/config/public/orders/plain.txt",
                json={"content": "x", "format": "text", "expected_version": 0, "author": "t"},
            ) as resp:
                assert resp.status == 200
        async with browser_page(member.admin_url) as (page, errors):
            await page.goto("/ui#traffic")
            row = page.locator("#traffic-table tbody tr")
            await row.first.wait_for()
            assert await row.count() == 1
            assert "failure_ratio: 0.5" in await row.first.inner_text()
            await screenshot(page, "traffic")
            # A rule document the traffic parser refuses never reaches the store.
            await page.goto("/ui#config")
            await page.fill("#publish-form input[name=group]", "orders")
            await page.select_option("#publish-form select[name=format]", "yaml")
            await publish_from_console(page, "inventory.yaml", "name: inventory\nbreaker: 7\n")
            await page.wait_for_selector("#error:not([hidden])")
            assert "400" in await page.inner_text("#error")
        unexpected = [m for m in errors.messages if "400" not in m]
        assert unexpected == []


async def test_with_auth_the_console_logs_in_and_shows_only_what_the_role_allows(
    tmp_path: Path,
) -> None:
    async with running_member(tmp_path) as member:
        await put(member, "pub/news", "hello")
        await put(member, "secret/plan", "hidden")
        await enable_auth(member)
        async with browser_page(member.admin_url) as (page, errors):
            await page.goto("/ui#keys")
            await page.wait_for_selector("#login:not([hidden])")
            await page.fill("#login-form input[name=user]", "ann")
            await page.fill("#login-form input[name=password]", "wrong")
            await page.click("#login-form button")
            await page.wait_for_selector("#error:not([hidden])")
            assert "401" in await page.inner_text("#error")
            await page.fill("#login-form input[name=password]", "annpw")
            await page.click("#login-form button")
            await page.wait_for_selector("#view-keys:not([hidden])")
            assert await page.inner_text("#who") == "user ann"
            # Root-only pages are not offered to a reader.
            assert await page.locator("#nav a[data-view=debug]").is_hidden()
            await page.fill("#keys-prefix", "pub/")
            await page.click("#keys-go")
            await page.locator("#keys-table button.key", has_text="pub/news").wait_for()
            await page.fill("#keys-prefix", "secret/")
            await page.click("#keys-go")
            await page.wait_for_selector("#error:not([hidden])")
            assert "403" in await page.inner_text("#error")
            assert await page.locator("#keys-table", has_text="secret/plan").count() == 0
            await screenshot(page, "auth-denied")
        # 401/403 answers show up as failed resource loads in the console.
        unexpected = [m for m in errors.messages if "401" not in m and "403" not in m]
        assert unexpected == []


async def test_the_console_renews_its_token_while_it_is_open(tmp_path: Path) -> None:
    # Tokens last 2-3 s (whole seconds); the console renews every second, so
    # 6 s later the user is still logged in (without renewal the listing
    # below is refused and the login form comes back).
    async with running_member(tmp_path, **{"auth-token-ttl": "3"}) as member:
        await put(member, "pub/news", "hello")
        await enable_auth(member)
        async with browser_page(member.admin_url) as (page, errors):
            await login(page, "ann", "annpw", view="keys")
            first = await page.evaluate("state.token")
            await asyncio.sleep(6)
            await page.fill("#keys-prefix", "pub/")
            await page.click("#keys-go")
            await page.locator("#keys-table button.key", has_text="pub/news").wait_for()
            assert await page.locator("#login").is_hidden()
            assert await page.evaluate("state.token") != first
        # The first listing (every key) is refused to a reader: that 403 only.
        assert [m for m in errors.messages if "403" not in m] == []


async def test_assets_load_nothing_from_elsewhere_and_unknown_ones_are_404(
    tmp_path: Path,
) -> None:
    async with running_member(tmp_path) as member, aiohttp.ClientSession(member.admin_url) as http:
        for path in ("/ui/static/..%2f..%2fetc%2fpasswd", "/ui/static/nope.js"):
            async with http.get(path) as resp:
                assert resp.status == 404, path
        async with http.get("/ui") as resp:
            assert resp.status == 200
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        for name in STATIC_FILES:
            async with http.get(f"/ui/static/{name}") as resp:
                assert resp.status == 200
                # No third-party URL: the only absolute URL is the SVG namespace.
                text = (await resp.text()).replace("http://www.w3.org/2000/svg", "")
                assert "://" not in text, name


async def login(page: Any, user: str, password: str, view: str = "services") -> None:
    await page.goto(f"/ui#{view}")
    await page.wait_for_selector("#login:not([hidden])")
    await page.fill("#login-form input[name=user]", user)
    await page.fill("#login-form input[name=password]", password)
    await page.click("#login-form button")
    await page.wait_for_selector(f"#view-{view}:not([hidden])")


async def register_from_console(page: Any, instance_id: str) -> None:
    await page.fill("#register-form input[name=service]", "web")
    await page.fill("#register-form input[name=instance_id]", instance_id)
    await page.fill("#register-form input[name=address]", "10.0.0.9")
    await page.fill("#register-form input[name=port]", "80")
    await page.click("#register-form button")


async def test_with_auth_a_writer_registers_and_publishes_as_itself_and_a_reader_is_refused(
    tmp_path: Path,
) -> None:
    async with running_member(tmp_path) as member:
        await enable_auth(member)
        async with browser_page(member.admin_url) as (page, errors):
            await login(page, "ed", "edpw")
            await register_from_console(page, "web-ed")
            await page.locator("#services-table tbody tr", has_text="web-ed").wait_for()
            await page.goto("/ui#config")
            await publish_from_console(page, "ed.conf", "owner=ed")
            await page.locator("#config-version", has_text="1").wait_for()
            await screenshot(page, "auth-writer")
        assert errors.messages == []
        async with aiohttp.ClientSession(member.admin_url) as http:
            async with http.post("/ui/api/login", json={"user": "ed", "password": "edpw"}) as r:
                token = (await r.json())["token"]
            headers = {"Authorization": token}
            async with http.get("/v1/config/public/DEFAULT_GROUP/ed.conf", headers=headers) as r:
                assert r.status == 200 and (await r.json())["content"] == "owner=ed"
            async with http.get("/ui/api/services", headers=headers) as r:
                listed = [i["id"] for s in (await r.json())["services"] for i in s["instances"]]
            assert listed == ["web-ed"]
        async with browser_page(member.admin_url) as (page, errors):
            await login(page, "ann", "annpw")
            await register_from_console(page, "web-ann")
            await page.wait_for_selector("#error:not([hidden])")
            message = await page.inner_text("#error")
            assert "403" in message and "may not write the service registry" in message
            await page.goto("/ui#config")
            await publish_from_console(page, "ann.conf", "owner=ann")
            # ann may not even read the centre: the page says so, whichever call it made first.
            refusal = page.locator("#error", has_text="user 'ann' may not")
            await refusal.filter(has_text="the configuration centre").wait_for()
            assert "403" in await refusal.inner_text()
            await screenshot(page, "auth-reader-refused")
        unexpected = [m for m in errors.messages if "403" not in m and "404" not in m]
        assert unexpected == []
        async with aiohttp.ClientSession(member.admin_url) as http:
            async with http.get("/ui/api/services", headers=headers) as r:
                listed = [i["id"] for s in (await r.json())["services"] for i in s["instances"]]
            assert listed == ["web-ed"]  # the refused registration stored nothing
            async with http.get("/v1/config/public/DEFAULT_GROUP/ann.conf", headers=headers) as r:
                assert r.status == 404


async def test_services_page_shows_an_api_registration_live_without_reload(
    tmp_path: Path,
) -> None:
    async with running_member(tmp_path) as member:
        client = Client([member.target])
        store = RegistryStore(client, KeyLayout())
        try:
            await store.register(Instance("default", "api", "api-1", "10.0.0.1", 80))
            async with browser_page(member.admin_url) as (page, errors):
                await page.goto("/ui#services")
                await page.locator("#services-table tbody tr", has_text="api-1").wait_for()
                await page.evaluate("window.notReloaded = true")
                await store.register(Instance("default", "api", "api-2", "10.0.0.2", 80))
                row = page.locator("#services-table tbody tr", has_text="api-2")
                await row.wait_for(timeout=2_000)
                await store.deregister("default", "api", "api-1")
                await page.locator("#services-table tbody tr", has_text="api-1").wait_for(
                    state="detached", timeout=2_000
                )
                assert await page.evaluate("window.notReloaded") is True
                await screenshot(page, "services-live")
            assert errors.messages == []
        finally:
            await client.close()
