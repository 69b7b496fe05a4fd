"""GitHub Apps: webhooks about personal access token requests to installed apps."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from patgate.accounts.models import User
from patgate.approvals.models import TokenRequest
from patgate.apps.models import App, Installation
from patgate.context import Context
from patgate.notifications import services as outbox
from patgate.orgs.models import Organization

REQUEST_EVENT = "personal_access_token_request"
REQUESTS_PERMISSION = "organization_personal_access_token_requests"


def enqueue_request_event(
    ctx: Context, org: Organization, action: str, request: TokenRequest, *, sender: User | None
) -> None:
    """Queue a ``personal_access_token_request`` webhook for every installed app on ``org``
    that has the requests permission, subscribes to the event and has a webhook URL."""
    rows = ctx.session.execute(
        select(Installation, App)
        .join(App, App.id == Installation.app_id)
        .where(Installation.org_id == org.id, App.webhook_url.is_not(None))
    ).all()
    for installation, app in rows:
        if REQUESTS_PERMISSION not in installation.permissions:
            continue
        if REQUEST_EVENT not in installation.events.get("events", []):
            continue
        outbox.enqueue(
            ctx,
            outbox.WEBHOOK,
            {
                "app_id": app.id,
                "installation_id": installation.id,
                "event": REQUEST_EVENT,
                "action": action,
                "request_id": request.id,
                "org_id": org.id,
                "sender_id": sender.id if sender else None,
                "body": _request_event_body(ctx, org, action, request, installation, sender),
            },
        )


def _request_event_body(
    ctx: Context,
    org: Organization,
    action: str,
    request: TokenRequest,
    installation: Installation,
    sender: User | None,
) -> dict[str, Any]:
    # The body is built when the event happens: it shows the request as it was then.
    from patgate.approvals import payloads

    return payloads.request_event(ctx, org, action, request, installation, sender)
