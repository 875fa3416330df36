"""A local SMTP catcher for the demo: accepts every message and saves it as an .eml file.

It stands in for the admins' mail server on one machine, so the emailed report can be opened
in any mail client, or as a web page (devstack/mailbox.py). Built on aiosmtpd; never part of a production
deployment.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class SaveToFolder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd hook
        with self._lock:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            count = len(list(self.folder.glob("*.eml")))
            path = self.folder / f"{stamp}-{count + 1:04d}.eml"
            path.write_bytes(envelope.original_content or envelope.content or b"")
        return "250 Message accepted for delivery"


def serve(folder: Path, host: str = "127.0.0.1", port: int = 8025, *, web_port: int | None = None) -> None:
    """Serve until interrupted (used by `warp-sync mailcatcher`); with `web_port`, the mailbox's web pages too."""
    controller = Controller(SaveToFolder(folder), hostname=host, port=port)
    controller.start()
    try:
        if web_port is None:
            while True:
                time.sleep(3600)
        from werkzeug.serving import make_server

        from warp_sync_pipeline.devstack.mailbox import create_mailbox_app

        make_server(host, web_port, create_mailbox_app(folder), threaded=True).serve_forever()
    finally:
        controller.stop()
