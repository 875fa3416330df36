"""The reconciliation report and failure alerts: rendering (email and Markdown) and SMTP delivery.

The report is a plain dict, filled by the reconciliation assets:

    {
        "run_id": "3f2c...",                 # the Dagster run id
        "dry_run": False,
        "status": "succeeded",               # running | succeeded | failed
        "started_at": datetime | str,        # optional
        "finished_at": datetime | str,       # optional
        "counts": {"customers_pulled": 1000, "changes_to_hubspot": 12, ...},   # name -> number
        "alerts": ["The brake stopped the write-back: 9.1% of records would change (limit 5%)."],
        "notes": ["12 rows skipped because they changed after the pull."],
        "sections": [
            {
                "title": "Changes written to HubSpot",
                "columns": ["BAN", "Field", "Old value", "New value"],
                "rows": [["ZT-000000001", "name", "Acme", "Acme Ltd"], ...],
                "total_rows": 1200,          # optional: when `rows` is a sample of a longer list
                "note": "…",                 # optional: one line under the title
            },
        ],
    }

Every value may come from HubSpot and is treated as data: control characters are stripped, the
HTML part comes from autoescaping Jinja templates, the Markdown escapes Markdown and HTML
special characters, and no report value ever reaches a mail header (the subject is built only
from our own vocabulary and a validated run id).

SMTP: STARTTLS with a verifying `ssl.create_default_context()` before any login (the settings
refuse a username without STARTTLS); plain SMTP only for a local catcher.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import smtplib
import ssl
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import jinja2
from tabulate import tabulate

from warp_sync_pipeline.core.alerts import Notice, NoticeKind
from warp_sync_pipeline.core.reconcile.results import Report, ReportSection, TrendPoint
from warp_sync_pipeline.core.report_tables import Attachment, file_name, report_attachments
from warp_sync_pipeline.core.settings import DEFAULTS, SettingsError, WarpSettings, load_settings
from warp_sync_pipeline.core.web_links import WebLinks
from warp_sync_pipeline.core.wording import count_label, field_label, reason_sentence

# Rows shown per table: an email of a million changes helps nobody; the full lists stay in the run.
EMAIL_MAX_ROWS_PER_SECTION = 100
MARKDOWN_MAX_ROWS_PER_SECTION = 50
# A hostile or broken value cannot blow up a table cell.
MAX_CELL_CHARS = 300
REASON_COLUMN = "Reason"
FIELD_COLUMN = "Field"
# The widest bar of the trend chart, in pixels (HTML table cells: many mail clients block images).
TREND_BAR_PX = 120
NO_LINKS = WebLinks()


DEFAULT_FROM = DEFAULTS.smtp_from
DEFAULT_TIMEOUT_SECONDS = DEFAULTS.smtp_timeout_seconds

_ADDRESS = re.compile(r"^[^@\s,<>\"']+@[^@\s,<>\"']+$")
_SAFE_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# C0 and C1 controls, DEL, and the bidirectional overrides/isolates that can disguise text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_KEEP_NEWLINES = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_WHITESPACE_CONTROLS = re.compile(r"[\t\r\n\v\f]+")
_HTML_SPECIAL = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}
_MARKDOWN_PUNCTUATION = frozenset(string.punctuation) - set(_HTML_SPECIAL)

TEMPLATES_DIR = Path(__file__).parent / "templates"


class EmailDeliveryError(RuntimeError):
    """Sending failed; `code` is stable (SMTP_TLS_FAILED, SMTP_AUTH_FAILED, ...). Never holds secrets."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- settings ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmailSettings:
    """SMTP and recipients, from SMTP_* and WARP_REPORT_RECIPIENTS (see .env.example)."""

    host: str | None
    port: int
    starttls: bool
    from_address: str
    timeout_seconds: float
    recipients: tuple[str, ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None

    @property
    def configured(self) -> bool:
        """Both a server and someone to send to."""
        return bool(self.host and self.recipients)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmailSettings:
        return cls.from_settings(load_settings(environ))

    @classmethod
    def from_settings(cls, settings: WarpSettings) -> EmailSettings:
        """The model checks each value; the rules between them (credentials only over TLS) are checked here."""
        starttls = settings.smtp_starttls
        username, password = settings.smtp_username, settings.smtp_password
        if username and not password:
            raise SettingsError("SMTP_PASSWORD", "is not set but SMTP_USERNAME is")
        if password and not username:
            raise SettingsError("SMTP_USERNAME", "is not set but SMTP_PASSWORD is")
        if username and not starttls:
            raise SettingsError(
                "SMTP_STARTTLS", "must be true when SMTP_USERNAME is set: a password is never sent without verified TLS"
            )
        _check_address("SMTP_FROM", settings.smtp_from)
        ca_file = settings.smtp_ca_file
        if ca_file is not None and not Path(ca_file).is_file():
            raise SettingsError("SMTP_CA_FILE", "names no readable file")
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port or (587 if starttls else 25),
            starttls=starttls,
            from_address=settings.smtp_from,
            timeout_seconds=settings.smtp_timeout_seconds,
            recipients=parse_recipients(settings.report_recipients or ""),
            username=username,
            password=password,
            ca_file=ca_file,
        )


def _check_address(variable: str, address: str) -> None:
    if not _ADDRESS.match(address):
        raise SettingsError(variable, f"{address!r} is not a plain email address (name@domain)")
    try:
        Address(addr_spec=address)
    except Exception:  # noqa: BLE001 - the email package raises several defect types
        raise SettingsError(variable, f"{address!r} is not a valid email address") from None


def parse_recipients(raw: str) -> tuple[str, ...]:
    """Comma-separated addresses, de-duplicated in order; names and angle brackets are refused."""
    found: list[str] = []
    for part in raw.split(","):
        address = part.strip()
        if not address:
            continue
        _check_address("WARP_REPORT_RECIPIENTS", address)
        if address.lower() not in {a.lower() for a in found}:
            found.append(address)
    return tuple(found)


# --- cleaning and escaping --------------------------------------------------------------------
def strip_controls(text: str, *, keep_newlines: bool = False) -> str:
    """Remove control characters; tabs and line breaks become one space unless kept."""
    if keep_newlines:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        return _CONTROL_KEEP_NEWLINES.sub("", text.replace("\t", " "))
    return _CONTROL.sub("", _WHITESPACE_CONTROLS.sub(" ", text))


def _plain_scalar(value: Any) -> Any:
    """numpy/pandas scalars as Python ones (without importing either); pandas gaps as None."""
    if value.__class__.__name__ in {"NAType", "NaTType"}:
        return None
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        return value.item()
    return value


def clean_value(value: Any, *, max_chars: int = MAX_CELL_CHARS) -> str:
    """One table cell or list item as safe plain text (not yet escaped for any markup)."""
    value = _plain_scalar(value)
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = "" if value != value else str(value)  # NaN (a pandas gap) shows as empty
    elif isinstance(value, decimal.Decimal):
        text = str(value)
    elif isinstance(value, (dt.datetime, dt.date)):
        text = _format_time(value)
    elif isinstance(value, (Mapping, list, tuple)):
        text = json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    else:
        text = str(value)
    text = strip_controls(text).strip()
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def escape_markdown(value: Any) -> str:
    """A value as literal Markdown text: HTML specials as entities, other punctuation backslashed.

    Backslashing every ASCII punctuation character is what CommonMark allows, and it defuses
    emphasis, links, headings, table pipes and autolinks (`www\\.example\\.com`) alike.
    """
    text = value if isinstance(value, str) else clean_value(value)
    text = strip_controls(text)
    out: list[str] = []
    for ch in text:
        if ch in _HTML_SPECIAL:
            out.append(_HTML_SPECIAL[ch])
        elif ch in _MARKDOWN_PUNCTUATION:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _format_time(value: dt.datetime | dt.date | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if value.tzinfo is not None else "")
    if isinstance(value, dt.date):
        return value.isoformat()
    return strip_controls(str(value)).strip()


def _format_count(value: Any) -> str:
    """Counts read better with thousands separators: 1,000,000."""
    value = _plain_scalar(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float) and value == value:
        return f"{int(value):,}" if value.is_integer() else f"{value:,.4f}".rstrip("0")
    return clean_value(value)


# --- the report's view model ------------------------------------------------------------------
@dataclass(frozen=True)
class _Section:
    title: str
    note: str
    columns: list[str]
    rows: list[list[str]]
    total_rows: int
    # Each cell's link (None: none), parallel to `rows`.
    urls: list[list[str | None]] = field(default_factory=list)
    # The CSV attached with the whole table, and whether it holds every row.
    attachment: Attachment | None = None

    @property
    def hidden_rows(self) -> int:
        return max(self.total_rows - len(self.rows), 0)


def _safe_run_id(run_id: Any) -> str | None:
    text = clean_value(run_id)
    return text if _SAFE_RUN_ID.match(text) else None


def _shown_cell(raw: ReportSection, column: str | None, value: Any, keys: Mapping[str, str]) -> str:
    """A cell as people read it: reason codes as sentences and fields by their labels (one table:
    core/wording.py); the stored report and the CSV keep the codes and names."""
    if column == REASON_COLUMN:
        value = reason_sentence(value)
    elif column == FIELD_COLUMN and value:
        value = field_label(value, keys.get("property"))
    return clean_value(value)


def _prepare_section(raw: ReportSection, number: int, max_rows: int, *, without_personal: bool, links: WebLinks,
                     attachment: Attachment | None = None) -> _Section:
    shown = [i for i, c in enumerate(raw.columns) if not (without_personal and c in raw.personal)]
    columns = [clean_value(raw.columns[i]) for i in shown]
    rows: list[list[str]] = []
    urls: list[list[str | None]] = []
    for index, row in enumerate(raw.rows[:max_rows]):
        keys = raw.row_keys(index)
        kept = [i for i in range(len(row)) if i in shown or i >= len(raw.columns)]
        names = [raw.columns[i] if i < len(raw.columns) else None for i in kept]
        cells = [_shown_cell(raw, name, row[i], keys) for i, name in zip(kept, names, strict=True)]
        cell_urls = [links.open(raw.link_columns[name], keys) if name in raw.link_columns and cell else None
                     for name, cell in zip(names, cells, strict=True)]
        width = max(len(columns), len(cells))
        rows.append(cells + [""] * (width - len(cells)))
        urls.append(cell_urls + [None] * (width - len(cells)))
    if rows and len(columns) < len(rows[0]):
        columns += [""] * (len(rows[0]) - len(columns))
    return _Section(title=clean_value(raw.title or f"Table {number}"), note=clean_value(raw.note, max_chars=1000),
                    columns=columns, rows=rows, total_rows=max(raw.total_rows, len(raw.rows)), urls=urls,
                    attachment=attachment)


def _trend_view(trend: Sequence[TrendPoint], links: WebLinks) -> list[dict[str, Any]]:
    """The trend's rows, each figure with its bar's width (scaled to the largest of its kind)."""
    figures = ("drift", "conflicts_opened", "errors")
    peaks = {name: max((getattr(p, name) or 0 for p in trend), default=0) for name in figures}
    rows = []
    for point in trend:
        row: dict[str, Any] = {"when": _format_time(point.started_at)[:16], "run": point.run_id[:8],
                               "url": links.run(point.run_id),
                               "mark": ", ".join(word for word, on in (("failed", point.status == "failed"),
                                                                       ("dry run", point.dry_run),
                                                                       ("incremental", point.mode == "incremental"))
                                                 if on)}
        for name in figures:
            value = getattr(point, name)
            row[name] = "" if value is None else f"{value:,}"
            row[name + "_px"] = (max(1, round(TREND_BAR_PX * value / peaks[name])) if value and peaks[name] else 0)
        rows.append(row)
    return rows


def _prepare(report: Report | Mapping[str, Any], max_rows: int, *, without_personal: bool = False,
             links: WebLinks = NO_LINKS, attachments: Sequence[Attachment] = (),
             trend: Sequence[TrendPoint] = ()) -> dict[str, Any]:
    """The report with every value turned into clean text (values are data: HubSpot's and WARP's) and the links
    `links` can make; without the columns that hold customer data when `without_personal`."""
    read = Report.read(report)
    attached = {a.filename.split(".")[0]: a for a in attachments}
    sections = [_prepare_section(raw, number, max_rows, without_personal=without_personal, links=links,
                                 attachment=attached.get(file_name(raw.title)))
                for number, raw in enumerate(read.sections, start=1)]
    review = int(read.counts.get("manual_conflicts") or 0)
    return {
        "run_url": links.run(read.run_id),
        "review_url": links.conflicts() if review else None,
        "review_count": review,
        "trend": _trend_view(trend, links),
        "run_id": clean_value(read.run_id),
        "dry_run": read.dry_run,
        "status": clean_value(read.status) or "unknown",
        "started_at": _format_time(read.started_at),
        "finished_at": _format_time(read.finished_at),
        "counts": [(clean_value(count_label(str(k))), _format_count(v)) for k, v in read.counts.items()],
        "alerts": [clean_value(a, max_chars=2000) for a in read.alerts],
        "notes": [clean_value(n, max_chars=2000) for n in read.notes],
        "sections": sections,
    }


# --- templates --------------------------------------------------------------------------------
_jinja = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    # Everything but the plain-text templates is escaped; strings rendered ad hoc are too.
    autoescape=jinja2.select_autoescape(
        enabled_extensions=("html", "htm", "xml"), disabled_extensions=("txt",), default_for_string=True, default=True
    ),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _text_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return tabulate(rows, headers=list(columns), tablefmt="simple", disable_numparse=True)


def _summary_table(counts: Sequence[tuple[str, str]]) -> str:
    return tabulate(list(counts), tablefmt="plain", colalign=("left", "right"), disable_numparse=True)


def _trend_table(trend: Sequence[Mapping[str, Any]]) -> str:
    rows = [[f"{p['when']} {p['run']}" + (f" ({p['mark']})" if p["mark"] else ""), p["drift"] or "-",
             p["conflicts_opened"] or "-", p["errors"] or "-"] for p in trend]
    return tabulate(rows, headers=["Run", "Drift", "Conflicts", "Errors"], tablefmt="simple",
                    colalign=("left", "right", "right", "right"), disable_numparse=True)


_jinja.filters["trend_table"] = _trend_table
_jinja.filters["text_table"] = _text_table
_jinja.filters["summary_table"] = _summary_table


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    attachments: tuple[Attachment, ...] = ()


def report_subject(report: Report | Mapping[str, Any]) -> str:
    """What needs doing, for a person reading only the subject: "2 need review, 17 changes written, 0 errors" (or
    "nothing changed"); a dry run, changes left unwritten (the brake, or write-back switched off) and a failed run
    marked. Only our own words, numbers and a validated run id: nothing from HubSpot reaches a header."""
    read = Report.read(report)
    run_id = _safe_run_id(read.run_id)
    run = f" - run {run_id[:8]}" if run_id else ""
    head = "[warp-sync] Reconciliation" + (" (dry run)" if read.dry_run else "")
    if read.status == "failed":
        return f"{head} FAILED{run}"
    return f"{head}: {_what_needs_doing(read.counts, dry_run=read.dry_run)}{run}"


def _count(counts: Mapping[str, Any], *names: str) -> int:
    return sum(int(counts.get(name) or 0) for name in names)


def _what_needs_doing(counts: Mapping[str, Any], *, dry_run: bool) -> str:
    review = _count(counts, "manual_conflicts")
    errors = _count(counts, "write_errors")
    planned = _count(counts, "changes_planned_to_hubspot", "changes_planned_to_warp")
    written = _count(counts, "changes_written_to_hubspot", "changes_written_to_warp")
    if not (review or errors or planned or written):
        return "nothing changed"
    if dry_run:
        changes = f"{planned:,} change{'s' if planned != 1 else ''} planned"
    elif planned and not written:
        changes = f"{planned:,} change{'s' if planned != 1 else ''} planned, none written"
    else:
        changes = f"{written:,} change{'s' if written != 1 else ''} written"
    return f"{review:,} need{'s' if review == 1 else ''} review, {changes}, {errors:,} error{'s' if errors != 1 else ''}"


def render_report_email(report: Report | Mapping[str, Any], *, max_rows: int = EMAIL_MAX_ROWS_PER_SECTION,
                        links: WebLinks = NO_LINKS, trend: Sequence[TrendPoint] = ()) -> RenderedEmail:
    """Subject, plain text and HTML, with links where `links` knows the bases, the `trend` of the last runs, and
    each table longer than `max_rows` attached whole as CSV."""
    read = Report.read(report)
    attachments = report_attachments(read, max_rows)
    view = _prepare(read, max_rows, links=links, attachments=attachments, trend=trend)
    subject = report_subject(read)
    context = {"r": view, "subject": subject}
    return RenderedEmail(
        subject=subject,
        text=_jinja.get_template("report_email.txt").render(context),
        html=_jinja.get_template("report_email.html").render(context),
        attachments=tuple(attachments),
    )


def _md_link(text: str, url: str | None) -> str:
    """Escaped text, linked when there is a URL (ours: built from validated ids and settings, `<>`-wrapped)."""
    shown = escape_markdown(text)
    return f"[{shown}](<{url}>)" if url and shown and "<" not in url and ">" not in url else shown


def render_markdown(report: Report | Mapping[str, Any], *, max_rows: int = MARKDOWN_MAX_ROWS_PER_SECTION,
                    without_personal: bool = False, links: WebLinks = NO_LINKS) -> str:
    """The report as Markdown; every value escaped, BANs and companies linked where `links` knows the bases.
    `without_personal` (Dagster's metadata: its event log is not the place for customer data) leaves out names,
    values and free text, pointing to the review pages instead."""
    view = _prepare(report, max_rows, without_personal=without_personal, links=links)
    md = escape_markdown
    lines = [f"## Reconciliation report: {md(view['status'])}{' (dry run)' if view['dry_run'] else ''}", ""]
    if without_personal:
        pages = links.conflicts()
        where = f"on the [review pages](<{pages}>)" if pages else "on the review pages"
        lines += [f"Names and values are left out here: they are in the emailed report and {where}.", ""]
    meta = [f"Run {_md_link(view['run_id'], view['run_url'])}"]
    if view["started_at"]:
        meta.append(f"started {md(view['started_at'])}")
    if view["finished_at"]:
        meta.append(f"finished {md(view['finished_at'])}")
    lines += [", ".join(meta), ""]
    if view["dry_run"]:
        lines += ["**Dry run:** nothing was changed on either side.", ""]
    if view["alerts"]:
        lines += ["### Alerts", ""] + [f"- **{md(a)}**" for a in view["alerts"]] + [""]
    lines += ["### Summary", ""]
    if view["counts"]:
        lines += ["| Count | Value |", "| --- | ---: |"]
        lines += [f"| {md(name)} | {md(value)} |" for name, value in view["counts"]] + [""]
    else:
        lines += ["No counts.", ""]
    if view["notes"]:
        lines += ["### Notes", ""] + [f"- {md(n)}" for n in view["notes"]] + [""]
    for section in view["sections"]:
        lines += [f"### {md(section.title)}", ""]
        if section.note:
            lines += [md(section.note), ""]
        if not section.rows:
            lines += ["None.", ""]
            continue
        header = [md(c) or " " for c in section.columns]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("| " + " | ".join("---" for _ in header) + " |")
        lines += ["| " + " | ".join(_md_link(c, u) for c, u in zip(row, urls, strict=True)) + " |"
                  for row, urls in zip(section.rows, section.urls, strict=True)]
        if section.hidden_rows:
            lines += ["", f"… and {section.hidden_rows:,} more rows (total {section.total_rows:,})."]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_alert(notice: Notice) -> RenderedEmail:
    """An alert, a reminder that it still fires, or its resolution. The subject is the notice's own (built from our
    words, numbers and identifiers), stripped of controls and cut to a line."""
    subject = clean_value(notice.subject, max_chars=200)
    view = {
        "kind": notice.kind.value,
        "title": clean_value(notice.title, max_chars=200),
        "since": _format_time(notice.since) if notice.kind is not NoticeKind.ALERT else "",
        "detail_lines": [strip_controls(line).rstrip() for line in notice.detail],
        "resolved": notice.kind is NoticeKind.RESOLVED,
    }
    context = {"a": view, "subject": subject}
    return RenderedEmail(
        subject=subject,
        text=_jinja.get_template("alert.txt").render(context),
        html=_jinja.get_template("alert.html").render(context),
    )


# --- messages and delivery --------------------------------------------------------------------
def build_message(rendered: RenderedEmail, settings: EmailSettings) -> EmailMessage:
    """multipart/alternative: the plain-text part first, the HTML part preferred by mail clients."""
    if not settings.recipients:
        raise EmailDeliveryError("EMAIL_NOT_CONFIGURED", "WARP_REPORT_RECIPIENTS names no one to send to")
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = settings.from_address
    message["To"] = ", ".join(settings.recipients)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=settings.from_address.rsplit("@", 1)[-1])
    # RFC 3834: an automatic message; vacation responders should not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text, subtype="plain", charset="utf-8")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8")
    for attachment in rendered.attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        # multipart/mixed around the alternatives: clients show the text and list the files.
        if maintype == "text":  # declared UTF-8, so no client guesses the names' accents
            message.add_attachment(attachment.content.decode("utf-8"), subtype=subtype, charset="utf-8",
                                   filename=attachment.filename)
        else:
            message.add_attachment(attachment.content, maintype=maintype, subtype=subtype,
                                   filename=attachment.filename)
    return message


@dataclass(frozen=True)
class DeliveryResult:
    accepted: tuple[str, ...]
    refused: dict[str, str]


def tls_context(settings: EmailSettings) -> ssl.SSLContext:
    """A verifying context (certificate chain and host name), trusting SMTP_CA_FILE when given."""
    return ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else ssl.create_default_context()


def send_message(
    message: EmailMessage,
    settings: EmailSettings,
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout_seconds: float | None = None,
) -> DeliveryResult:
    """Deliver over SMTP: STARTTLS (verified) before any login when configured.

    `ssl_context` replaces the default verifying context (tests pass one trusting their own CA).
    `timeout_seconds` caps each network operation (a sensor uses a short one).
    """
    if not settings.host:
        raise EmailDeliveryError("EMAIL_NOT_CONFIGURED", "SMTP_HOST is not set")
    where = f"{settings.host}:{settings.port}"
    timeout = min(timeout_seconds or settings.timeout_seconds, settings.timeout_seconds)
    recipients = [a.addr_spec for a in message["To"].addresses]
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=timeout, local_hostname="localhost") as smtp:
            smtp.ehlo()
            if settings.starttls:
                try:
                    smtp.starttls(context=ssl_context or tls_context(settings))
                except smtplib.SMTPNotSupportedError:
                    raise EmailDeliveryError(
                        "SMTP_TLS_UNAVAILABLE", f"{where} does not offer STARTTLS (SMTP_STARTTLS is true)"
                    ) from None
                except ssl.SSLError as exc:
                    raise EmailDeliveryError(
                        "SMTP_TLS_FAILED", f"TLS with {where} could not be verified: {exc.__class__.__name__}: {exc}"
                    ) from None
                smtp.ehlo()
            if settings.username:
                try:
                    smtp.login(settings.username, settings.password or "")
                except smtplib.SMTPAuthenticationError as exc:
                    raise EmailDeliveryError(
                        "SMTP_AUTH_FAILED", f"{where} refused the login of {settings.username!r} ({exc.smtp_code})"
                    ) from None
            refused_raw = smtp.send_message(message, from_addr=settings.from_address, to_addrs=recipients)
    except EmailDeliveryError:
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        raise EmailDeliveryError(
            "SMTP_RECIPIENTS_REFUSED", f"{where} refused every recipient: {', '.join(exc.recipients)}"
        ) from None
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        raise EmailDeliveryError("SMTP_REFUSED", f"{where} refused the message ({exc.smtp_code})") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise EmailDeliveryError("SMTP_UNAVAILABLE", f"could not deliver through {where}: {exc.__class__.__name__}") from None
    refused = {addr: f"{code} {reply.decode('utf-8', 'replace')}" for addr, (code, reply) in refused_raw.items()}
    return DeliveryResult(accepted=tuple(a for a in recipients if a not in refused), refused=refused)


def send_report(
    report: Report | Mapping[str, Any],
    settings: EmailSettings,
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout_seconds: float | None = None,
    links: WebLinks = NO_LINKS,
    trend: Sequence[TrendPoint] = (),
) -> DeliveryResult:
    message = build_message(render_report_email(report, links=links, trend=trend), settings)
    return send_message(message, settings, ssl_context=ssl_context, timeout_seconds=timeout_seconds)


def send_alert(
    notice: Notice,
    settings: EmailSettings,
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout_seconds: float | None = None,
) -> DeliveryResult:
    message = build_message(render_alert(notice), settings)
    return send_message(message, settings, ssl_context=ssl_context, timeout_seconds=timeout_seconds)
