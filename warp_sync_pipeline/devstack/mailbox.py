"""The demo's mailbox as web pages: the messages the mail catcher saved, newest first, each readable as the HTML
a mail client would show (served by `warp-sync mailcatcher --web-port`, on loopback; a development tool).

A message's HTML is shown under a Content-Security-Policy that allows no script, no request anywhere and no form,
so a hostile value in a report cannot act even here.
"""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from flask import Flask, Response, abort, render_template_string, send_file

_NAME = re.compile(r"^\d{8}T\d{6}-\d{4}\.eml$")
MESSAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; sandbox"

_INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>warp-sync demo mailbox</title>
<style>body{font-family:Arial,Helvetica,sans-serif;margin:24px;color:#1f2933}td,th{padding:4px 12px 4px 0;
text-align:left}th{color:#52606d}</style></head>
<body><h1>Demo mailbox</h1>
<p>{{ messages|length }} message(s) the mail catcher saved in {{ folder }}, newest first.</p>
<table><tr><th>Received</th><th>To</th><th>Subject</th><th></th></tr>
{% for m in messages %}<tr><td>{{ m.received }}</td><td>{{ m.to }}</td>
<td><a href="/message/{{ m.name }}">{{ m.subject }}</a></td><td><a href="/raw/{{ m.name }}">.eml</a></td></tr>
{% endfor %}</table></body></html>"""

_TEXT = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ subject }}</title></head>
<body><pre style="white-space:pre-wrap;font-size:13px">{{ text }}</pre></body></html>"""


def _read(path: Path) -> EmailMessage:
    return message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[return-value]


def create_mailbox_app(folder: Path) -> Flask:
    app = Flask(__name__)

    def message_path(name: str) -> Path:
        path = folder / name
        if not _NAME.match(name) or not path.is_file():
            abort(404)
        return path

    @app.get("/")
    def index() -> str:
        messages = []
        for path in sorted(folder.glob("*.eml"), reverse=True) if folder.exists() else []:
            message = _read(path)
            messages.append({"name": path.name, "subject": message["Subject"] or "(no subject)",
                             "to": message["To"] or "", "received": message["Date"] or path.name[:15]})
        return render_template_string(_INDEX, messages=messages, folder=str(folder))

    @app.get("/message/<name>")
    def message(name: str) -> Response:
        parsed = _read(message_path(name))
        body = parsed.get_body(preferencelist=("html", "plain"))
        if body is not None and body.get_content_type() == "text/html":
            response = Response(body.get_content(), mimetype="text/html")
        else:
            text = body.get_content() if body is not None else ""
            response = Response(render_template_string(_TEXT, subject=parsed["Subject"] or "", text=text),
                                mimetype="text/html")
        response.headers["Content-Security-Policy"] = MESSAGE_CSP
        return response

    @app.get("/raw/<name>")
    def raw(name: str) -> Response:
        return send_file(message_path(name), mimetype="message/rfc822", as_attachment=True, download_name=name)

    return app
