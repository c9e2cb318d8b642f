"""The web UI in a real browser: Playwright driving Debian's Chromium (never a downloaded
one) against the UI on loopback. Screenshots are kept in test-artifacts/ at the repository
root (git-ignored); each test prints where it wrote them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from archlab.memory import in_flight, leases
from archlab.memory.store import MEMORY_FILE, Memory
from support import serving

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
_LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")


class Browser:
    """A page that fails the test on a console error, a script error or a request to
    anything but loopback (which is aborted, so nothing leaves the machine)."""

    def __init__(self, page: sync_api.Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.route("**/*", self._only_loopback)

    def _console(self, message: sync_api.ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def _only_loopback(self, route: sync_api.Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "about") or url.netloc.rsplit(":", 1)[0] in _LOOPBACK:
            route.continue_()
        else:
            self.problems.append(f"request to another host: {route.request.url}")
            route.abort()

    def plots(self) -> list[dict[str, float]]:
        """The size of each plot and how many marks (dots, lines) it drew."""
        sizes = []
        for svg in self.page.locator("svg.plot").all():
            box = svg.bounding_box()
            assert box is not None
            marks = svg.locator("circle, polyline").count()
            sizes.append({"width": box["width"], "height": box["height"], "marks": marks})
        return sizes


@pytest.fixture(scope="module")
def chromium() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def browser(chromium: sync_api.Browser) -> Iterator[Browser]:
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    yield Browser(context.new_page())
    context.close()


def shot(browser: Browser, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    browser.page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def test_runs_run_and_candidate_pages_in_chromium(
    browser: Browser,
    real_run: tuple[Memory, str],
) -> None:
    memory, run_id = real_run
    page = browser.page
    with serving(memory) as url:
        page.goto(url + "/")
        page.click(f"#runs a[href='/runs/{run_id}']")
        page.wait_for_url(f"**/runs/{run_id}")
        assert page.locator("h1").inner_text() == f"Run {run_id}"
        plots = browser.plots()
        assert len(plots) == 2 and all(p["width"] > 100 and p["height"] > 100 for p in plots)
        assert all(p["marks"] >= 3 for p in plots), plots
        assert page.locator("#lineage li").count() == 3
        assert page.locator("#budgets meter").count() == 1  # only the candidates have a limit
        shot(browser, "ui-run.png")

        # the best candidate that is not the baseline: its page has the most to show
        proposed = next(c for c in memory.candidates(run_id) if c["origin"] != "baseline")
        page.click(f"#candidates a[href='/candidates/{proposed['candidate_id']}']")
        page.wait_for_url(f"**/candidates/{proposed['candidate_id']}")
        curves = browser.plots()
        assert len(curves) >= 2 and all(p["width"] > 100 and p["marks"] >= 1 for p in curves)
        # hostile text from the model is shown as text, never run or rendered as markup
        assert "<script>alert" in page.locator("#plan").inner_text()
        assert page.locator("#plan script, #trace script, #plan img").count() == 0
        folded = page.locator("#trace details").first
        assert not folded.locator("pre").is_visible()
        folded.locator("summary").click()
        assert folded.locator("pre").is_visible()  # a folded prompt opens whole
        shot(browser, "ui-candidate.png")

        page.click("nav a[href='/']")
        page.wait_for_url(url + "/")
    assert browser.problems == []


def test_a_live_run_page_follows_the_run(browser: Browser, tmp_path: Path) -> None:
    """The live page's script polls the JSON, shows the trials in flight, and reloads
    when a candidate arrives."""
    memory = Memory(tmp_path / "home" / MEMORY_FILE)
    run_id = "20260101-000000-live"
    memory.start_run(
        run_id=run_id, task="mqar", task_fingerprint="fp", brain="heuristic", seed=0, config={}
    )
    page = browser.page
    with serving(memory) as url, leases.hold(tmp_path / "home", run_id):
        page.goto(f"{url}/runs/{run_id}")
        assert page.locator("#live").is_visible()
        assert page.locator("#candidates a").count() == 0
        source = "import torch\n\n\ndef build_model(spec):\n    return torch.nn.Linear(4, 4)\n"
        memory.save_candidate(
            candidate_id="cccc2222new", run_id=run_id, task="mqar", task_fingerprint="fp",
            source=source, source_hash="h", parents=[], plan={"summary": "a new idea"},
            brain="heuristic", origin="proposed", status="pending",
        )  # fmt: skip
        page.locator("#candidates a").first.wait_for(timeout=15_000)  # reloaded on its own
        assert "a new idea" in page.locator("#candidates").inner_text()
        assert "nothing now" in page.locator("#in-flight").inner_text()
        # a trial starts: the script shows it without reloading the page
        in_flight.mark(memory, run_id, 0, "cccc2222new", "proxy")
        page.locator("#in-flight", has_text="cccc2222new proxy").wait_for(timeout=15_000)
        assert page.locator("#in-flight a").get_attribute("href") == "/candidates/cccc2222new"
        memory.finish_run(run_id, "finished", "trial budget spent")
        page.locator("#status.finished").wait_for(timeout=15_000)
        assert page.locator("#live").count() == 0  # a finished run's page stays still
    assert browser.problems == []
