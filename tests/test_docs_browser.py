"""The OpenAPI pages render in a real browser with no network beyond loopback: headless Chromium (Debian's
`chromium`, which .ci/run installs) loads `/docs/swagger` and `/docs/redoc` from a running `analytics serve`,
every request that is not for 127.0.0.1 sent to a proxy that does not exist, and the operations must be on the
page. A screenshot of each is kept beside the test's logs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port, running, service_env, until

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
SUMMARY = "Every task: schedule, enabled, next run, last run and its status"  # an operation of the document


def chromium() -> str:
    """The browser binary; a missing one skips the test, except under CI=true, where it fails it."""
    for name in CHROMIUM:
        if found := shutil.which(name):
            return found
    reason = "no Chromium on this machine (Debian: `apt-get install chromium`; .ci/run installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


def browse(binary: str, url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on `url` with no network but loopback, the page's scripts given time to run."""
    argv = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
        "--virtual-time-budget=20000", "--window-size=1280,2000", *extra, url,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("page", ["swagger", "redoc"])
def test_the_docs_render_offline(page: str, database_url: str, redis_url: str, tmp_path: Path) -> None:
    binary = chromium()
    port = free_port()
    log = tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with running(["serve"], service_env(database_url, redis_url, ANALYTICS_PORT=str(port)), log) as server:
        until(lambda: httpx.get(f"{base}/health", timeout=5).status_code == 200, server, log)
        # The blocked network really is blocked: a page elsewhere does not load.
        elsewhere = browse(binary, "http://example.com/", tmp_path / "profile-0", "--dump-dom")
        assert "Example Domain" not in elsewhere.stdout
        dom = browse(binary, f"{base}/docs/{page}", tmp_path / "profile-1", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert SUMMARY in dom.stdout, dom.stdout[-3000:]
        assert "/api/community-analytics/track" in dom.stdout
        screenshot = tmp_path / f"docs-{page}.png"
        shot = browse(binary, f"{base}/docs/{page}", tmp_path / "profile-2", f"--screenshot={screenshot}")
        assert shot.returncode == 0 and screenshot.stat().st_size > 20_000, shot.stderr[-2000:]
