"""A small driver for headless Chromium over the DevTools protocol (websockets), for the browser tests.

It acts like a person: it types with Input.insertText into a focused field and clicks with mouse events at
an element's centre; it reads the page with DOM.getOuterHTML. No script runs in the page.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
)


def find_chromium() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class Page:
    def __init__(self, ws: ClientConnection, timeout_s: float) -> None:
        self._ws = ws
        self._timeout_s = timeout_s
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + self._timeout_s
        while True:
            message = json.loads(self._ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._events.append(message)

    def _wait_event(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + self._timeout_s
        while True:
            while self._events:
                event = self._events.pop(0)
                if event.get("method") == name:
                    return event
            self._events.append(json.loads(self._ws.recv(timeout=max(0.01, deadline - time.monotonic()))))

    def navigate(self, url: str) -> None:
        self._events.clear()
        self.call("Page.navigate", url=url)
        self._wait_event("Page.loadEventFired")

    def url(self) -> str:
        history = self.call("Page.getNavigationHistory")
        return history["entries"][history["currentIndex"]]["url"]

    def html(self) -> str:
        root = self.call("DOM.getDocument", depth=-1)["root"]["nodeId"]
        return self.call("DOM.getOuterHTML", nodeId=root)["outerHTML"]

    def wait_for_text(self, *texts: str, timeout_s: float = 60.0) -> str:
        """Poll the rendered DOM until every text shows (pages that render client-side, like Dagster's)."""
        deadline = time.monotonic() + timeout_s
        while True:
            html = self.html()
            if all(text in html for text in texts):
                return html
            if time.monotonic() > deadline:
                missing = [text for text in texts if text not in html]
                raise AssertionError(f"the page never showed {missing}")
            time.sleep(0.5)

    def click_text(self, text: str) -> None:
        """Click the element whose own text is `text` (for client-side pages: no load is awaited)."""
        search = self.call("DOM.performSearch", query=f"//*[text()={json.dumps(text)}]")
        found = self.call("DOM.getSearchResults", searchId=search["searchId"], fromIndex=0, toIndex=1)["nodeIds"]
        if not found:
            raise AssertionError(f"no element reads {text!r}")
        self._click_node(found[0])

    def _click_node(self, node: int) -> None:
        self.call("DOM.scrollIntoViewIfNeeded", nodeId=node)
        quad = self.call("DOM.getBoxModel", nodeId=node)["model"]["content"]
        x, y = sum(quad[0::2]) / 4, sum(quad[1::2]) / 4
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def _node(self, selector: str) -> int:
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise AssertionError(f"no element matches {selector!r}")
        return node

    def type_into(self, selector: str, text: str) -> None:
        self.call("DOM.focus", nodeId=self._node(selector))
        self.call("Input.insertText", text=text)

    def click_and_wait(self, selector: str) -> None:
        """Click like a mouse would, then wait for the page that the click loads."""
        node = self._node(selector)
        self._events.clear()
        self._click_node(node)
        self._wait_event("Page.loadEventFired")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def chromium_page(executable: str, profile_dir: Path, *, timeout_s: float = 10.0) -> Iterator[Page]:
    """Start headless Chromium (our own process, stopped on exit) and attach to its first page."""
    process = subprocess.Popen(
        [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "--remote-debugging-port=0",
         "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not port_file.exists() or not port_file.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.05)
        port = port_file.read_text().splitlines()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout_s) as answer:
            targets = json.load(answer)
        page_target = next(t for t in targets if t.get("type") == "page")
        with connect(page_target["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout_s) as ws:
            page = Page(ws, timeout_s)
            page.call("Page.enable")
            page.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1,
                      mobile=False)
            yield page
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href, self._text = dict(attrs).get("href"), []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((" ".join("".join(self._text).split()), self._href))
            self._href = None


def anchors(html: str) -> list[tuple[str, str]]:
    """Every link of a page or an email as (its text, its href), in order."""
    parser = _Anchors()
    parser.feed(html)
    return parser.links
