"""``GET /orgs/{org}/audit-log``: owners read the org's token and policy events."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from patgate.audit import services as audit
from patgate.authz.decision import Actions
from patgate.orgs import services as orgs
from patgate.web.api.paging import link_header, page_of
from patgate.web.deps import api_call


def get_audit_log(request: Request) -> Response:
    with api_call(request, anonymous=False) as call:
        org = orgs.get_org(call.ctx, request.path_params["org"])
        call.require(Actions.READ_AUDIT_LOG, orgs.org_facts(call.ctx, org))
        query = audit.parse_phrase(request.query_params.get("phrase"))
        page = page_of(request)
        entries, total = audit.list_entries(
            call.ctx, org.id, query, page=page.number, per_page=page.size
        )
        link = link_header(request, page, total)
        return JSONResponse(
            [audit.as_github(e) for e in entries], headers={"Link": link} if link else None
        )


routes = [Route("/orgs/{org}/audit-log", get_audit_log)]
