"""The shipped deployment as written: deploy/systemd's flags on a node, deploy/nginx's config in front, a real
PostgreSQL and Redis. Six students on six devices (127.0.0.2-7, distinct addresses to nginx) all get their
page; a device past its share is refused alone; nginx forwards only the routes the pages use."""

from __future__ import annotations

import http.client
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from testkit.processes import Nginx, PostgresServer, RedisServer
from testkit.serving import kernel_id, running_server

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def unit_options(store: str, redis_url: str) -> dict:
    """The `smartsession serve` flags of the shipped systemd unit, its variables filled in; the address, port
    and data dir are the test's own."""
    unit = (DEPLOY / "systemd" / "smartsession@.service").read_text()
    command = re.search(r"(?ms)^ExecStart=(.*?[^\\])$", unit).group(1).replace("\\\n", " ")
    command = command.replace("${SMARTSESSION_STORE}", store).replace("${SMARTSESSION_REDIS}", redis_url)
    args = shlex.split(command)
    args = args[args.index("serve") + 1:]
    options, i = {}, 0
    while i < len(args):
        key, value = args[i].lstrip("-").replace("-", "_"), args[i + 1]
        options[key] = value
        i += 2
    for own in ("host", "port", "data_dir"):
        options.pop(own)
    return options


def get_from(proxy_url: str, address: str, url: str, headers: dict | None = None) -> tuple[int, str]:
    parts, target = urlsplit(proxy_url), urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=180, source_address=(address, 0))
    try:
        conn.request("GET", f"{target.path}?{target.query}" if target.query else target.path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def test_six_devices_through_the_shipped_nginx_and_systemd_flags(tmp_path):
    with ExitStack() as stack:
        pg = stack.enter_context(PostgresServer())
        redis = stack.enter_context(RedisServer())
        options = unit_options(pg.url, redis.url)
        assert options["trusted_proxy"] == "127.0.0.1" and options["max_per_address"] == "4"
        # The test harness's own defaults for many pages from 127.0.0.1 are left out: the product's apply.
        node = stack.enter_context(running_server(tmp_path, pool_size=0, max_address_share=None,
                                                  max_teacher_pages_per_link=None, connect_timeout=60, **options))
        proxy = stack.enter_context(Nginx(DEPLOY / "nginx" / "smartsession.conf", [urlsplit(node.url).netloc]))
        join = node.join_url.replace(node.url.rstrip("/"), proxy.url)
        devices = [f"127.0.0.{i}" for i in range(2, 8)]
        # All at once (a class arriving; and pages that never connect are culled within a minute): one page
        # from each device, and four more from the first, which holds at most --max-per-address (4).
        with ThreadPoolExecutor(10) as pool:
            asked = [devices[0]] * 4 + devices
            pages = list(pool.map(lambda device: get_from(proxy.url, device, join), asked))
        statuses = [status for status, _ in pages]
        assert sorted(statuses[:5]) == [200] * 4 + [429], statuses  # the first device: its four, then refused
        assert statuses[5:] == [200] * 5, statuses  # every other device
        # A client claiming another address is believed only through nginx: nginx replaces the header, and
        # directly the node ignores it (127.0.0.2 already holds 4 pages).
        assert get_from(proxy.url, devices[0], join, {"X-Forwarded-For": "10.9.9.9"})[0] == 429
        assert get_from(node.url, devices[0], node.join_url, {"X-Forwarded-For": "10.9.9.9"})[0] == 429
        # Routes the pages do not use end at nginx, the kernels' own request channel included.
        kid = kernel_id(next(body for status, body in pages if status == 200))
        for path in (f"/voila/query/{kid}", "/voila/tree", "/voila/api/contents", "/lab", "/api/sessions",
                     "/smartsession/pipe/kernel"):
            assert get_from(proxy.url, devices[2], proxy.url + path)[0] == 404, path
        assert get_from(proxy.url, devices[2], proxy.url + "/smartsession/health")[0] == 200
