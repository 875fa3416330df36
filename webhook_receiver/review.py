"""The review pages (server-rendered, no JavaScript needed): `/review/...`.

A person signs in by pasting their token once; the page session is Flask's signed cookie (WARP_SECRET_KEY;
Secure, HttpOnly, SameSite=Strict, path /review) carrying the credential's name, roles and a reference that
is re-checked against admin_credentials on every request, so a revoked credential ends its sessions. Every
form carries a CSRF token (Flask-WTF's generate_csrf/validate_csrf), checked here only: the API and the
webhook route take none. Without WARP_SECRET_KEY these pages answer 503 naming it; the API still works.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit
from uuid import UUID

import sqlalchemy as sa
from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import generate_csrf, validate_csrf
from werkzeug.wrappers import Response
from wtforms import ValidationError

from warp_sync_pipeline.core.auth import Principal, Role
from warp_sync_pipeline.core.errors import ServiceError
from warp_sync_pipeline.core.fields import load_rules
from warp_sync_pipeline.core.hubspot import HubSpotError
from warp_sync_pipeline.core.link_review import (
    NEEDS_A_PERSON,
    case,
    cases,
    create_company,
    relink,
    retry_stuck_rows,
    unlink_customer,
)
from warp_sync_pipeline.core.onboarding.matching import Category
from warp_sync_pipeline.core.onboarding.previews import (
    DECIDABLE,
    approve_preview,
    decide_candidate,
    get_preview,
    label_candidate,
    list_candidates,
    list_previews,
    measured_precision,
    sample_rows,
)
from warp_sync_pipeline.core.reconcile.preview import RulePreview
from warp_sync_pipeline.core.reconcile.report import OUTCOME_WORDS
from warp_sync_pipeline.core.review import (
    HISTORY_LIMIT_DEFAULT,
    ConflictChanged,
    ReviewError,
    customer_conflicts,
    customer_history,
    customer_summary,
    list_open_conflicts,
    login_credential,
    mapped_fields,
    parse_version,
    resolve_conflict,
    session_principal,
)
from warp_sync_pipeline.core.rule_drafts import (
    RuleDraftError,
    draft_previews,
    draft_rules,
    get_draft,
    list_drafts,
    live_rules,
    publish_draft,
    roll_back,
    rule_versions,
)
from warp_sync_pipeline.core.web_links import WebLinks
from warp_sync_pipeline.core.wording import field_label, reason_sentence, resolution_phrase
from webhook_receiver.conflicts_api import STATUS_BY_CODE, hubspot_client, resolution_settings
from webhook_receiver.errors import ApiError, answer_of
from webhook_receiver.resources import receiver_resources

log = logging.getLogger(__name__)

bp = Blueprint("review", __name__, url_prefix="/review", template_folder="templates")

SECRET_VARIABLE = "WARP_SECRET_KEY"
MIN_SECRET_LENGTH = 32
# A sign-in lasts this long at most, however active the session (the cookie itself expires when idle).
DEFAULT_SESSION_MAX_AGE = timedelta(hours=12)
PUBLIC_ENDPOINTS = {"review.login", "review.login_submit"}
SECURITY_HEADERS = {
    # No scripts at all; inline <style> only; forms post to this origin; never framed.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

F = TypeVar("F", bound=Callable[..., Any])


def _engine() -> sa.Engine:
    return receiver_resources().db


def _fingerprint_key() -> bytes:
    return str(current_app.secret_key).encode("utf-8")


def _bootstrap_token() -> str:
    return str(current_app.config.get("WARP_API_TOKEN") or "")


def _csrf_time_limit() -> int:
    return int(current_app.permanent_session_lifetime.total_seconds())


def error_page(status: int, code: str, message: str, **context: Any) -> tuple[str, int]:
    return render_template("review/error.html", status=status, code=code, message=message, **context), status


# --- every request: configuration, CSRF, sign-in ---------------------------------------------------------------


@bp.before_request
def _guard() -> Any:
    secret = current_app.secret_key
    if not secret:
        return error_page(503, "REVIEW_NOT_CONFIGURED",
                          f"The review pages need {SECRET_VARIABLE} (a random secret of at least "
                          f"{MIN_SECRET_LENGTH} characters) to sign their sessions; it is not set.")
    if len(str(secret)) < MIN_SECRET_LENGTH:
        return error_page(503, "REVIEW_NOT_CONFIGURED",
                          f"{SECRET_VARIABLE} is too short: use at least {MIN_SECRET_LENGTH} random characters.")
    if request.endpoint not in PUBLIC_ENDPOINTS:
        principal = _session_principal()
        if principal is None:
            # Nothing is done for a request without a sign-in, a form post included: it goes to sign in.
            target = request.full_path if request.method == "GET" else url_for("review.conflicts")
            return redirect(url_for("review.login", next=target.rstrip("?")), code=303)
        g.principal = principal
    if request.method == "POST":
        try:
            validate_csrf(request.form.get("csrf_token"), time_limit=_csrf_time_limit())
        except ValidationError as exc:
            reason = exc.args[0] if exc.args else "The CSRF token is invalid."
            return error_page(400, "CSRF_FAILED", f"{reason} Reload the page and try again.")
    return None


def _session_principal() -> Principal | None:
    ref = session.get("credential_ref")
    if not ref:
        return None
    login_at = session.get("login_at", 0)
    max_age = current_app.config.get("REVIEW_SESSION_MAX_AGE", DEFAULT_SESSION_MAX_AGE)
    if not isinstance(login_at, int | float) or time.time() - login_at > max_age.total_seconds():
        session.clear()
        flash("Your sign-in has expired; paste your token again.", "info")
        return None
    principal = session_principal(_engine(), ref, bootstrap_token=_bootstrap_token(),
                                  fingerprint_key=_fingerprint_key())
    if principal is None:
        session.clear()
        flash("Your credential is no longer valid (revoked or rotated); sign in again.", "error")
    return principal


@bp.after_request
def _headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.errorhandler(ApiError)
@bp.errorhandler(ServiceError)
def _api_error(exc: ApiError | ServiceError) -> tuple[str, int]:
    status, code, message, _ = answer_of(exc)
    return error_page(status, code, message)


@bp.context_processor
def _helpers() -> dict[str, Any]:
    principal: Principal | None = g.get("principal")
    return {
        "csrf_token": generate_csrf,
        "principal": principal,
        "may": (lambda permission: bool(principal and principal.may(permission))),
        "when": _when,
        "shown": _shown,
        # Reason codes and fields as people read them (core/wording.py, the email's table too).
        "reason": reason_sentence,
        "field_label": field_label,
        "resolution": resolution_phrase,
    }


def _links() -> WebLinks:
    """Runs to the Dagster UI, companies to HubSpot (None: no link): for the pages that show them only, since the
    first call in a worker may ask HubSpot for its account (the sign-in page never waits on that)."""
    return receiver_resources().links()


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _shown(value: str | None) -> str:
    """Empty and missing values, spelled out (autoescaping handles the rest)."""
    if value is None:
        return "(none)"
    return value if value != "" else "(empty)"


def page_requires(permission: str) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            principal: Principal = g.principal
            if not principal.may(permission):
                return error_page(403, "FORBIDDEN",
                                  f"Credential {principal.name!r} may not {permission.replace(':', ' ')}.")
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


# --- sign in and out --------------------------------------------------------------------------------------------


def _keyset(raw: str) -> int | None:
    """A page position from the query string: ASCII digits only (`str.isdigit` takes '²', which `int` refuses)."""
    return int(raw) if re.fullmatch(r"[0-9]{1,18}", raw) else None


def _safe_next(raw: str | None) -> str:
    """Only a path inside the review pages (never another site)."""
    default = url_for("review.conflicts")
    if not raw:
        return default
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or not parts.path.startswith("/review/") or "\\" in raw:
        return default
    return raw


@bp.get("/")
def index() -> Response:
    return redirect(url_for("review.conflicts"), code=303)


@bp.get("/login")
def login() -> Any:
    if session.get("credential_ref") and _session_principal() is not None:
        return redirect(_safe_next(request.args.get("next")), code=303)
    return render_template("review/login.html", next=_safe_next(request.args.get("next")),
                           messages=get_flashed_messages(with_categories=True))


@bp.post("/login")
def login_submit() -> Any:
    next_url = _safe_next(request.form.get("next"))
    credential = login_credential(_engine(), request.form.get("token", ""), bootstrap_token=_bootstrap_token(),
                                  fingerprint_key=_fingerprint_key())
    if credential is None:
        log.info("review sign-in refused: unknown or revoked token")
        return render_template("review/login.html", next=next_url,
                               messages=[("error", "That token is not valid (unknown or revoked).")]), 401
    principal = Principal(credential.name, frozenset(Role(role) for role in credential.roles))
    if not (principal.may("conflicts:read") or principal.may("history:read") or principal.may("onboarding:read")):
        return render_template("review/login.html", next=next_url,
                               messages=[("error", f"Credential {credential.name!r} has no review role.")]), 403
    # A fresh session on sign-in (no fixation); the token itself is never stored.
    session.clear()
    session.permanent = True
    session["credential_ref"] = credential.ref
    session["name"] = credential.name
    session["roles"] = list(credential.roles)
    session["login_at"] = int(time.time())
    log.info("review sign-in: %s", credential.name)
    return redirect(next_url, code=303)


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    flash("Signed out.", "info")
    return redirect(url_for("review.login"), code=303)


# --- the review queue ------------------------------------------------------------------------------------------


def _filters(source: Any) -> dict[str, str]:
    return {key: source.get(key, "").strip() for key in ("field", "customer") if source.get(key, "").strip()}


def _conflicts_page(status: int = 200, notice: dict[str, Any] | None = None,
                    filters: dict[str, str] | None = None, drafts: dict[int, str] | None = None) -> Any:
    engine = _engine()
    filters = filters if filters is not None else _filters(request.args)
    fields = mapped_fields(engine)
    field = filters.get("field")
    if field and field not in fields:
        return error_page(400, "VALIDATION_ERROR", f"{field!r} is not a mapped WARP field.")
    after_raw = request.args.get("after", "")
    after = _keyset(after_raw)
    page = list_open_conflicts(engine, field=field, customer=filters.get("customer"), after=after)
    html = render_template(
        "review/conflicts.html", page=page, fields=fields, filters=filters, notice=notice,
        drafts=drafts or {}, messages=get_flashed_messages(with_categories=True), links=_links(),
        next_url=(url_for("review.conflicts", after=page.next_after, **filters) if page.next_after else None),
    )
    return html, status


@bp.get("/conflicts")
@page_requires("conflicts:read")
def conflicts() -> Any:
    return _conflicts_page()


@bp.post("/conflicts/<int:conflict_id>/resolve")
@page_requires("conflicts:resolve")
def resolve(conflict_id: int) -> Any:
    filters = _filters(request.form)
    choice = request.form.get("choice", "")
    value = request.form.get("value", "") if choice == "value" else None
    seen = {"warp": request.form.get("seen_warp"), "hubspot": request.form.get("seen_hubspot")}
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        outcome = resolve_conflict(
            _engine(), hubspot_client(app), conflict_id, choice, value,
            expected_version=parse_version(request.form.get("expected_version", "")),
            actor=g.principal.name, **resolution_settings(app),
        )
    except ReviewError as exc:
        log.info("conflict %s not resolved by %s: %s", conflict_id, g.principal.name, exc.code)
        notice: dict[str, Any] = {"kind": "error", "code": exc.code, "message": exc.message,
                                  "conflict_id": conflict_id, "seen": seen}
        if isinstance(exc, ConflictChanged):
            notice["current"] = exc.current
        drafts = {conflict_id: value} if value is not None else None
        return _conflicts_page(STATUS_BY_CODE.get(exc.code, 409), notice, filters, drafts)
    log.info("conflict %s resolved by %s (%s)", conflict_id, g.principal.name, outcome.choice.value)
    sides = [name for name, written in (("HubSpot", outcome.hubspot_written), ("WARP", outcome.warp_written))
             if written]
    written = f"written to {' and '.join(sides)}" if sides else "both sides held it already"
    flash(f"Conflict {conflict_id} resolved: {outcome.warp_field} is now {_shown(outcome.value)!r} "
          f"({written}).", "success")
    return redirect(url_for("review.conflicts", **filters), code=303)


# --- a customer's sync history ---------------------------------------------------------------------------------


@bp.get("/customers/<customer_id>")
@page_requires("conflicts:read")
def customer(customer_id: str) -> Any:
    """A customer's sync history: for admins (history:read), and for resolvers, of the customers whose conflicts
    they see (what happened before is what a resolver needs to choose)."""
    try:
        customer_uuid = UUID(customer_id)
    except ValueError:
        return error_page(404, "NOT_FOUND", "No such customer (the id is not a UUID).")
    engine = _engine()
    summary = customer_summary(engine, customer_uuid)
    conflicts_of_customer = customer_conflicts(engine, customer_uuid) if summary is not None else []
    if not g.principal.may("history:read") and not conflicts_of_customer:
        # The same answer whether or not the customer exists: a resolver cannot probe for customers.
        return error_page(403, "FORBIDDEN", f"Credential {g.principal.name!r} may read the history of customers "
                                            "with conflicts only.")
    if summary is None:
        return error_page(404, "NOT_FOUND", "No such customer.")
    before_raw = request.args.get("before", "")
    before = _keyset(before_raw)
    history = customer_history(engine, customer_uuid, before=before)
    older = (url_for("review.customer", customer_id=customer_uuid, before=history[-1].id)
             if len(history) == HISTORY_LIMIT_DEFAULT else None)
    return render_template(
        "review/customer.html", customer=summary, history=history,
        conflicts=conflicts_of_customer, older_url=older, links=_links(),
        messages=get_flashed_messages(with_categories=True),
    )


# --- day one: onboarding previews (admin) ---------------------------------------------------------------------


def _preview_max_age() -> timedelta:
    return timedelta(hours=receiver_resources().settings.onboarding_preview_max_age_hours)


@bp.get("/onboarding")
@page_requires("onboarding:read")
def onboarding_previews() -> Any:
    return render_template("review/onboarding_list.html", previews=list_previews(_engine()),
                           max_age=_preview_max_age(), messages=get_flashed_messages(with_categories=True))


@bp.get("/onboarding/<int:preview_id>")
@page_requires("onboarding:read")
def onboarding_preview(preview_id: int) -> Any:
    engine = _engine()
    preview = get_preview(engine, preview_id)
    if preview is None:
        return error_page(404, "NOT_FOUND", f"No preview {preview_id}.")
    category = request.args.get("category", Category.REVIEW.value)
    after_raw, ban = request.args.get("after", ""), request.args.get("ban", "").strip().upper() or None
    page = list_candidates(engine, preview_id, category, after=_keyset(after_raw),
                           ban=ban)
    next_url = (url_for("review.onboarding_preview", preview_id=preview_id, category=category,
                        after=page.next_after, **({"ban": ban} if ban else {})) if page.next_after else None)
    return render_template(
        "review/onboarding.html", preview=preview, category=category, categories=[c.value for c in Category],
        page=page, ban=ban or "", next_url=next_url, decidable=category in DECIDABLE,
        fresh=preview.fresh(_preview_max_age()), max_age=_preview_max_age(),
        measured=measured_precision(engine, preview_id), messages=get_flashed_messages(with_categories=True),
    )


@bp.get("/onboarding/<int:preview_id>/sample")
@page_requires("onboarding:read")
def onboarding_sample(preview_id: int) -> Any:
    engine = _engine()
    preview = get_preview(engine, preview_id)
    if preview is None:
        return error_page(404, "NOT_FOUND", f"No preview {preview_id}.")
    after_raw = request.args.get("after", "")
    page = sample_rows(engine, preview_id, after=_keyset(after_raw))
    next_url = (url_for("review.onboarding_sample", preview_id=preview_id, after=page.next_after)
                if page.next_after else None)
    return render_template("review/onboarding_sample.html", preview=preview, page=page, next_url=next_url,
                           measured=measured_precision(engine, preview_id),
                           messages=get_flashed_messages(with_categories=True))


@bp.post("/onboarding/<int:preview_id>/sample/<int:candidate_id>")
@page_requires("onboarding:approve")
def onboarding_label(preview_id: int, candidate_id: int) -> Any:
    label_candidate(_engine(), preview_id, candidate_id, request.form.get("label", ""), actor=g.principal.name)
    return redirect(url_for("review.onboarding_sample", preview_id=preview_id) + f"#row-{candidate_id}", code=303)


@bp.post("/onboarding/<int:preview_id>/candidates/<int:candidate_id>")
@page_requires("onboarding:approve")
def onboarding_decide(preview_id: int, candidate_id: int) -> Any:
    decided = decide_candidate(_engine(), preview_id, candidate_id, request.form.get("decision", ""),
                               actor=g.principal.name, max_age=_preview_max_age())
    log.info("onboarding preview %s row %s %s by %s", preview_id, candidate_id, decided.decision, g.principal.name)
    flash(f"{decided.ban or 'Row'} {decided.decision}: company {decided.company_id}.", "success")
    return redirect(url_for("review.onboarding_preview", preview_id=preview_id, category=decided.category), code=303)


@bp.post("/onboarding/<int:preview_id>/approve")
@page_requires("onboarding:approve")
def onboarding_approve(preview_id: int) -> Any:
    record = approve_preview(_engine(), preview_id, actor=g.principal.name, max_age=_preview_max_age(),
                             create_missing=request.form.get("create_missing") == "on",
                             set_domain=request.form.get("set_domain") == "on")
    log.info("onboarding preview %s approved by %s (%s)", preview_id, g.principal.name, record.approval)
    flash(f"Preview {preview_id} approved by {record.approved_by}.", "success")
    return redirect(url_for("review.onboarding_preview", preview_id=preview_id), code=303)


# --- links a person settles (admin) ----------------------------------------------------------------------------


@bp.get("/links")
@page_requires("links:manage")
def link_cases() -> Any:
    status = request.args.get("status", "deleted")
    page = cases(_engine(), status, after=request.args.get("after") or None)
    next_url = url_for("review.link_cases", status=status, after=page.next_after) if page.next_after else None
    return render_template("review/links.html", page=page, status=status, statuses=NEEDS_A_PERSON,
                           next_url=next_url, messages=get_flashed_messages(with_categories=True))


# A person waits on the page: the HubSpot part of a link action is bounded like the create's.
LINK_DEADLINE_SECONDS = 20.0


def _customer_uuid(customer_id: str) -> UUID:
    try:
        return UUID(customer_id)
    except ValueError:
        raise ApiError(404, "NOT_FOUND", "No such customer (the id is not a UUID).") from None


@bp.get("/links/<customer_id>")
@page_requires("links:manage")
def link_case(customer_id: str) -> Any:
    found = case(_engine(), _customer_uuid(customer_id))
    if found is None:
        return error_page(404, "NOT_FOUND", f"No customer {customer_id}.")
    return render_template("review/link.html", case=found, messages=get_flashed_messages(with_categories=True))


@bp.post("/links/<customer_id>/<action>")
@page_requires("links:manage")
def link_action(customer_id: str, action: str) -> Any:
    customer = _customer_uuid(customer_id)
    engine, actor = _engine(), g.principal.name
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if action == "relink":
        relink(engine, hubspot_client(app).with_deadline(LINK_DEADLINE_SECONDS), customer,
               request.form.get("company_id", ""), actor=actor)
        message = "Linked."
    elif action == "unlink":
        unlink_customer(engine, customer, actor=actor)
        message = "Unlinked."
    elif action == "create":
        with engine.connect() as conn:
            rules = load_rules(conn)
        made = create_company(engine, hubspot_client(app).with_deadline(LINK_DEADLINE_SECONDS), rules, customer,
                              actor=actor)
        message = f"Company {made} created."
    elif action == "retry":
        message = f"{retry_stuck_rows(engine, customer, actor=actor)} queue rows sent again."
    else:
        return error_page(404, "NOT_FOUND", f"No action {action!r}.")
    log.info("link of %s: %s by %s", customer, action, actor)
    flash(message, "success")
    return redirect(url_for("review.link_case", customer_id=customer), code=303)


# --- rule drafts (admin) -----------------------------------------------------------------------------------------


@bp.get("/rules")
@page_requires("rules:read")
def rules_page() -> Any:
    engine = _engine()
    with engine.connect() as conn:
        live = live_rules(conn)
    drafts = list_drafts(engine)
    return render_template("review/rules.html", live=live, drafts=drafts, versions=rule_versions(engine, limit=20),
                           changes={d.id: d.changes(live) for d in drafts},
                           messages=get_flashed_messages(with_categories=True))


@bp.get("/rules/<name>")
@page_requires("rules:read")
def rule_draft_page(name: str) -> Any:
    engine = _engine()
    try:
        with engine.connect() as conn:
            draft = get_draft(conn, name, any_status=True)
            live = live_rules(conn)
            try:
                draft_rules(conn, draft)
                problem = None
            except RuleDraftError as exc:
                problem = exc.message
    except RuleDraftError as exc:
        return error_page(404, exc.code, exc.message)
    previews = draft_previews(engine, name)
    preview = RulePreview.from_json(previews[0].summary) if previews else None
    return render_template("review/rule_draft.html", draft=draft, changes=draft.changes(live), problem=problem,
                           preview=preview, latest=previews[0] if previews else None, outcomes=OUTCOME_WORDS,
                           links=_links(), messages=get_flashed_messages(with_categories=True))


@bp.post("/rules/<name>/publish")
@page_requires("rules:publish")
def rule_draft_publish(name: str) -> Any:
    try:
        # HubSpot's properties are checked when the receiver can reach HubSpot (HUBSPOT_ACCESS_TOKEN).
        done = publish_draft(_engine(), name, g.principal.name, receiver_resources().hubspot())
    except RuleDraftError as exc:
        flash(f"Draft {name} was not published ({exc.code}): {exc.message}", "error")
        return redirect(url_for("review.rule_draft_page", name=name), code=303)
    except HubSpotError as exc:
        flash(f"Draft {name} was not published: HubSpot's properties could not be checked ({exc.message}). "
              "Try again once HubSpot answers.", "error")
        return redirect(url_for("review.rule_draft_page", name=name), code=303)
    log.info("rule draft %s published by %s (version %s kept)", name, g.principal.name, done.version_id)
    flash(f"Draft {name} published: every flow follows it now. The rules it replaced are kept as version "
          f"{done.version_id}.", "success")
    return redirect(url_for("review.rules_page"), code=303)


@bp.post("/rules/rollback/<int:version_id>")
@page_requires("rules:publish")
def rules_rollback(version_id: int) -> Any:
    try:
        done = roll_back(_engine(), g.principal.name, version_id)
    except RuleDraftError as exc:
        flash(f"Not rolled back ({exc.code}): {exc.message}", "error")
        return redirect(url_for("review.rules_page"), code=303)
    log.info("rules rolled back to version %s by %s", version_id, g.principal.name)
    flash(f"Rules rolled back to version {version_id}; the rules replaced are kept as version {done.version_id}.",
          "success")
    return redirect(url_for("review.rules_page"), code=303)
