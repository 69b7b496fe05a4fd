"""The authorization matrix: every route of the live application (the REST API and every web
UI page and form) by every kind of principal, on both databases.

Each (route, principal) is a test of its own. It asserts the answer (status, GitHub's
``message`` or the page's text, the redirect) and — for every refusal, and every call that
should change nothing — that no row of any table changed: no audit entry, no outbox message,
nothing (``last_used_at`` aside: see ``support.principals.NOISE_COLUMNS``).

The table of expectations is below, one row per (method, path). The routes are enumerated from
the application itself (through its Mounts), so a route added without a row here gets a test
of its own that fails naming it; a row whose route is gone fails the same way.

Calls that are allowed to change something (approve, revoke, register an app, ...) are made
on spare objects (``spare``) so that the objects every refusal aims at stay as they were: a
refusal is then a real one (the same call by an allowed principal would succeed), and every
family of routes has at least one allowed call that is executed and checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from patgate.config import load_settings
from patgate.runtime import Runtime
from support.env import TEST_SECRET_KEY
from support.principals import (
    API_PRINCIPALS,
    PASSWORD,
    SESSION_PRINCIPALS,
    PrincipalWorld,
    Snapshots,
    app_routes,
    build_world,
    diff,
    routes_of,
)
from support.server import LiveServer, bind_free_port

PRINCIPALS = (*API_PRINCIPALS, *SESSION_PRINCIPALS)

BAD_CREDENTIALS = "Bad credentials"
NOT_FOUND = "Not Found"
PAT_FORBIDDEN = "Resource not accessible by personal access token"
APP_FORBIDDEN = "Resource not accessible by integration"
JWT_REQUIRED = "A JSON web token could not be decoded"
FG_RESTRICTED = "`globex` forbids access via a fine-grained personal access token."
CLASSIC_RESTRICTED = (
    "`globex` forbids access via a personal access token (classic). Please use a GitHub App, "
    "OAuth App, or a personal access token with fine-grained permissions."
)
LIFETIME = (
    "The 'acme' organization forbids access via a fine-grained personal access tokens if the "
    "token's lifetime is greater than 366 days. Please adjust your token's lifetime at the "
    "following URL: {base}/settings/personal-access-tokens/{token_id}"
)
ORG_OWNERS_ONLY = "Only owners of the acme organization can view and change its settings."
ENTERPRISE_OWNERS_ONLY = "Only owners of the Megacorp enterprise can view and change its policies."
PAGE_NOT_FOUND = "There is nothing here, or you cannot see it."
LOGIN = "<the sign-in page, coming back here>"


# ---- expectations -----------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What a call must answer. ``message``: GitHub's ``message`` (API) or a text the page
    shows (UI); ``location``: the redirect (:data:`LOGIN`: the sign-in page, back here);
    ``check``: a predicate on the JSON body."""

    status: int
    message: str | None = None
    location: str | None = None
    check: Callable[[Any], bool] | None = None

    @property
    def succeeds(self) -> bool:
        return self.status < 400 and self.location != LOGIN


# The groups a table may name (later keys override earlier ones, so a group then a member).
GROUPS: dict[str, tuple[str, ...]] = {
    "everyone": PRINCIPALS,
    # On the API a web session's cookie is no credential: the caller is nobody.
    "nobody": ("anonymous", *SESSION_PRINCIPALS),
    "bad": ("malformed", "expired", "suspended"),
    "fg_hidden": ("fg_pending", "fg_denied", "fg_revoked"),
    "pats": tuple(p for p in API_PRINCIPALS if p.startswith(("fg_", "classic_"))),
    "installations": ("installation_with", "installation_without"),
    # In the web UI a token is no session: every API credential is nobody there.
    "not_signed_in": API_PRINCIPALS,
    "sessions": SESSION_PRINCIPALS,
}


def table(**entries: Expect) -> dict[str, Expect]:
    found: dict[str, Expect] = {}
    for key, value in entries.items():
        for name in GROUPS.get(key, (key,)):
            assert name in PRINCIPALS, f"unknown principal {name!r}"
            found[name] = value
    missing = set(PRINCIPALS) - set(found)
    assert not missing, f"no expectation for {sorted(missing)}"
    return found


def ok(status: int = 200, check: Callable[[Any], bool] | None = None) -> Expect:
    return Expect(status, check=check)


def error(status: int, message: str) -> Expect:
    return Expect(status, message)


def names(*expected: str) -> Callable[[Any], bool]:
    return lambda body: sorted(r["name"] for r in body) == sorted(expected)


ALL_REPOS = ("public-site", "private-api", "private-ops")


def api_read(
    *,
    anonymous: Expect,
    fg_hidden: Expect,
    allowed: Expect,
    installation_without: Expect,
) -> dict[str, Expect]:
    """A read of an acme resource that needs a permission (and, for PATs, a grant)."""
    return table(
        nobody=anonymous,
        bad=error(401, BAD_CREDENTIALS),
        fg_hidden=fg_hidden,
        fg_approved=allowed,
        fg_restricted=error(403, FG_RESTRICTED),
        fg_lifetime=error(403, LIFETIME),
        classic_allowed=allowed,
        classic_restricted=error(403, CLASSIC_RESTRICTED),
        installation_with=allowed,
        installation_without=installation_without,
        app_jwt=error(404, NOT_FOUND),
    )


GOVERNANCE_READ = table(
    nobody=error(401, BAD_CREDENTIALS),
    bad=error(401, BAD_CREDENTIALS),
    pats=error(403, PAT_FORBIDDEN),
    installation_with=ok(),
    installation_without=error(403, APP_FORBIDDEN),
    # An app's JWT is no installation: refused as the eight endpoints refuse every non-App,
    # with the PATs' message (``not_an_app``), which does not fit a JWT: reported.
    app_jwt=error(403, PAT_FORBIDDEN),
)


def governance_write(status: int) -> dict[str, Expect]:
    return {**GOVERNANCE_READ, "installation_with": ok(status)}


def jwt_only(allowed: Expect) -> dict[str, Expect]:
    return table(
        everyone=error(401, JWT_REQUIRED),
        bad=error(401, BAD_CREDENTIALS),
        app_jwt=allowed,
    )


LOGIN_REDIRECT = Expect(303, location=LOGIN)


def ui(
    *,
    allowed: tuple[str, ...],
    ok_answer: Expect,
    refused: Expect,
) -> dict[str, Expect]:
    """A page of signed-in people: nobody is sent to sign in, ``allowed`` get ``ok_answer``,
    the other sessions ``refused``."""
    entries: dict[str, Expect] = {"not_signed_in": LOGIN_REDIRECT, "sessions": refused}
    entries |= dict.fromkeys(allowed, ok_answer)
    return table(**entries)


def signed_in(answer: Expect = ok()) -> dict[str, Expect]:
    return ui(allowed=SESSION_PRINCIPALS, ok_answer=answer, refused=answer)


def org_owner(answer: Expect = ok()) -> dict[str, Expect]:
    # Owners only: not the members, not the owners of another organization, not the owner of
    # the enterprise acme belongs to, not a site admin (none of them is an owner of acme).
    return ui(allowed=("owner",), ok_answer=answer, refused=Expect(403, ORG_OWNERS_ONLY))


def enterprise_owner(answer: Expect = ok()) -> dict[str, Expect]:
    return ui(
        allowed=("enterprise_owner",), ok_answer=answer, refused=Expect(403, ENTERPRISE_OWNERS_ONLY)
    )


def own_token(answer: Expect = ok()) -> dict[str, Expect]:
    # A token page of mona's: anyone else's token is a 404 (site admins included).
    return ui(allowed=("member",), ok_answer=answer, refused=Expect(404, PAGE_NOT_FOUND))


def site_admin(answer: Expect = ok()) -> dict[str, Expect]:
    # The stafftools do not exist for anyone but site admins.
    return ui(allowed=("site_admin",), ok_answer=answer, refused=Expect(404, PAGE_NOT_FOUND))


def public(answer: Expect = ok()) -> dict[str, Expect]:
    return table(everyone=answer)


@dataclass(frozen=True)
class Ref:
    """A value of the world (an id, a login), resolved when the call is made."""

    key: str


@dataclass(frozen=True)
class Row:
    """One route and what every principal gets from it.

    ``params``: path parameters → keys of the world's values (default: the same name);
    ``body``: the JSON (API) or form (UI) of the call; ``spare``: params and body overrides
    for the principals that are allowed to change something (see the module's docstring).
    ``mutating``: an allowed call changes the database (so the snapshot is taken again).
    """

    method: str
    path: str
    expect: dict[str, Expect]
    variant: str = ""
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    spare: dict[str, Any] = field(default_factory=dict)
    spare_body: Any = None
    mutating: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}" + (f" [{self.variant}]" if self.variant else "")

    @property
    def is_api(self) -> bool:
        return self.path.startswith("/api/")


API = "/api/v3"
ORGS = API + "/orgs/{org}"
REQUESTS = ORGS + "/personal-access-token-requests"
GRANTS = ORGS + "/personal-access-tokens"
SETTINGS = "/organizations/{org}/settings"
UI_REQUESTS = SETTINGS + "/personal-access-token-requests"
UI_ACTIVE = SETTINGS + "/personal-access-tokens-active"
FINE_GRAINED = "/settings/personal-access-tokens"
CLASSIC = "/settings/tokens"
APPS = SETTINGS + "/apps"
MAILBOX = "/stafftools/mailbox"

# Bodies that change something for real: a refusal of them is a real refusal.
PAT_SETTINGS_CHANGE = {
    "fine_grained": "allow", "approval": "not_required", "classic": "restrict",
    "fine_grained_max_lifetime": "30", "classic_max_lifetime": "30",
}  # fmt: skip
PAT_SETTINGS_AS_THEY_ARE = {
    "fine_grained": "allow", "approval": "required", "classic": "allow",
    "fine_grained_max_lifetime": "366", "classic_max_lifetime": "",
}  # fmt: skip
ENTERPRISE_CHANGE = {
    "fine_grained": "restrict", "approval": "not_required", "classic": "restrict",
    "fine_grained_max_lifetime": "days", "fine_grained_max_lifetime_days": "7",
    "classic_max_lifetime": "orgs",
}  # fmt: skip
ENTERPRISE_AS_IT_IS = {
    "fine_grained": "orgs", "approval": "orgs", "classic": "orgs",
    "fine_grained_max_lifetime": "orgs", "classic_max_lifetime": "orgs",
}  # fmt: skip
TOKEN_EDIT = {"description": "edited", "expiration": "keep", "repository_selection": "none"}

ROWS: list[Row] = [
    # ---- the resource endpoints (SPEC §1) ---------------------------------------------------
    Row("GET", API + "/user", table(
        nobody=error(401, BAD_CREDENTIALS),
        bad=error(401, BAD_CREDENTIALS),
        pats=ok(check=lambda body: body["login"] == "mona"),
        # Neither an installation nor an app is a user: an installation token gets GitHub's
        # 403 `Resource not accessible by integration`; an app's JWT, which is no API
        # credential here, a 404.
        installations=error(403, APP_FORBIDDEN),
        app_jwt=error(404, NOT_FOUND),
    )),
    Row("GET", ORGS, table(
        everyone=ok(check=lambda body: body["login"] in ("acme", "globex")),
        bad=error(401, BAD_CREDENTIALS),
        app_jwt=error(404, NOT_FOUND),
    )),
    Row("GET", ORGS + "/repos", table(
        # What each caller may see: public repositories for everybody, private ones with a
        # grant (or the classic `repo` scope, or the installation's metadata permission).
        everyone=ok(check=names("public-site")),
        bad=error(401, BAD_CREDENTIALS),
        fg_approved=ok(check=names(*ALL_REPOS)),
        classic_allowed=ok(check=names(*ALL_REPOS)),
        installation_with=ok(check=names(*ALL_REPOS)),
        app_jwt=ok(check=names()),
    )),
    Row("GET", ORGS + "/members", api_read(
        anonymous=error(401, BAD_CREDENTIALS),
        # The org itself is visible: what the token may not do there is a 403.
        fg_hidden=error(403, PAT_FORBIDDEN),
        allowed=ok(check=lambda body: {"mona", "olivia"} <= {u["login"] for u in body}),
        installation_without=error(403, APP_FORBIDDEN),
    )),
    Row("GET", API + "/repos/{owner}/{repo}", variant="private", expect=api_read(
        anonymous=error(404, NOT_FOUND),
        fg_hidden=error(404, NOT_FOUND),
        allowed=ok(check=lambda body: body["full_name"] == "acme/private-api"),
        installation_without=error(403, APP_FORBIDDEN),
    )),
    Row("GET", API + "/repos/{owner}/{repo}", variant="public", params={"repo": "public_repo"},
        expect=table(
            # Public resources stay readable by every valid token, whatever the policies say.
            everyone=ok(check=lambda body: body["name"] == "public-site"),
            bad=error(401, BAD_CREDENTIALS),
            app_jwt=error(404, NOT_FOUND),
        )),
    Row("GET", API + "/repos/{owner}/{repo}/issues", api_read(
        anonymous=error(404, NOT_FOUND),
        fg_hidden=error(404, NOT_FOUND),
        allowed=ok(check=lambda body: [i["title"] for i in body][-1:] == ["a first issue"]),
        installation_without=error(403, APP_FORBIDDEN),
    )),
    Row("POST", API + "/repos/{owner}/{repo}/issues", mutating=True,
        body={"title": "opened by the authorization matrix"},
        expect={**api_read(
            anonymous=error(401, BAD_CREDENTIALS),
            fg_hidden=error(404, NOT_FOUND),
            allowed=ok(201, check=lambda body: body["user"]["login"] == "mona"),
            installation_without=error(403, APP_FORBIDDEN),
        ),
            # An installation acts on issues as its bot, which patgate does not model yet.
            "installation_with": error(403, APP_FORBIDDEN),
        }),
    Row("GET", API + "/repos/{owner}/{repo}/issues/{number:int}", api_read(
        anonymous=error(404, NOT_FOUND),
        fg_hidden=error(404, NOT_FOUND),
        allowed=ok(check=lambda body: body["title"] == "a first issue"),
        installation_without=error(403, APP_FORBIDDEN),
    )),
    # ---- the audit log (SPEC §8): owners' tokens, or an installation with the permission --
    Row("GET", ORGS + "/audit-log", api_read(
        anonymous=error(401, BAD_CREDENTIALS),
        fg_hidden=error(403, PAT_FORBIDDEN),
        # mona's token has organization_administration: read, but mona is no owner.
        allowed=error(403, PAT_FORBIDDEN),
        installation_without=error(403, APP_FORBIDDEN),
    ) | {"installation_with": ok(check=lambda body: len(body) > 0)}),
    # ---- the eight governance endpoints (SPEC §6) and their two aliases -------------------
    Row("GET", REQUESTS, GOVERNANCE_READ),
    Row("POST", REQUESTS, governance_write(202), mutating=True,
        body={"pat_request_ids": [Ref("pat_request_id")], "action": "deny", "reason": "no"},
        spare_body={"pat_request_ids": [Ref("spare_request_0")], "action": "approve"}),
    Row("POST", REQUESTS + "/{pat_request_id}", governance_write(204), mutating=True,
        body={"action": "approve"}, spare={"pat_request_id": "spare_request_1"}),
    Row("GET", REQUESTS + "/{pat_request_id}/repositories", GOVERNANCE_READ),
    Row("GET", GRANTS, GOVERNANCE_READ),
    Row("POST", GRANTS, governance_write(202), mutating=True,
        body={"pat_ids": [Ref("pat_id")], "action": "revoke"},
        spare_body={"pat_ids": [Ref("spare_grant_0")], "action": "revoke"}),
    Row("POST", GRANTS + "/{pat_id}", governance_write(204), mutating=True,
        body={"action": "revoke"}, spare={"pat_id": "spare_grant_1"}),
    Row("GET", GRANTS + "/{pat_id}/repositories", GOVERNANCE_READ),
    Row("GET", API + "/organizations/{org_id}/personal-access-token-requests/{pat_request_id}"
        "/repositories", GOVERNANCE_READ),
    Row("GET", API + "/organizations/{org_id}/personal-access-tokens/{pat_id}/repositories",
        GOVERNANCE_READ),
    # ---- the App endpoints: the app's JWT and nothing else ---------------------------------
    Row("GET", API + "/app", jwt_only(ok(check=lambda body: body["slug"] == "governor"))),
    Row("GET", API + "/app/installations", jwt_only(ok(check=lambda body: len(body) == 1))),
    Row("GET", ORGS + "/installation",
        jwt_only(ok(check=lambda body: body["app_slug"] == "governor"))),
    Row("POST", API + "/app/installations/{installation_id}/access_tokens", mutating=True,
        body={}, expect=jwt_only(ok(201, check=lambda body: body["token"].startswith("ghs_")))),
    Row("GET", API + "/openapi.json", public(ok(check=lambda body: "paths" in body))),
    # ---- signing in and out, the user's pages ---------------------------------------------
    Row("GET", "/login", table(
        not_signed_in=ok(),
        sessions=Expect(303, location="/"),
    )),
    Row("POST", "/login", public(Expect(303, location="/")),
        body={"login": "visitor", "password": PASSWORD}),
    Row("POST", "/logout", public(Expect(303, location="/login"))),
    Row("GET", "/", signed_in()),
    Row("GET", "/settings/profile", signed_in()),
    Row("GET", "/settings/organizations", signed_in()),
    Row("GET", "/avatars/{login}", public()),
    Row("GET", "/static/{path}", public(), params={"path": "static_file"}),
    # ---- an organization's settings: owners only ------------------------------------------
    Row("GET", SETTINGS, org_owner(Expect(303, location="/organizations/acme/settings/profile"))),
    Row("GET", SETTINGS + "/profile", org_owner()),
    Row("GET", SETTINGS + "/personal-access-tokens", org_owner()),
    Row("POST", SETTINGS + "/personal-access-tokens", org_owner(Expect(303)), mutating=True,
        body=PAT_SETTINGS_CHANGE, spare_body=PAT_SETTINGS_AS_THEY_ARE),
    Row("POST", SETTINGS + "/personal-access-tokens/opt-in", org_owner(Expect(303)),
        mutating=True,
        body={"fine_grained": "restrict", "approval": "not_required", "classic": "restrict"},
        spare_body={"fine_grained": "allow", "approval": "required", "classic": "allow"}),
    Row("GET", UI_REQUESTS, org_owner()),
    Row("POST", UI_REQUESTS + "/confirm", org_owner(),
        body={"decision": "approve", "request_ids": [Ref("request_id")]}),
    Row("POST", UI_REQUESTS + "/approve", org_owner(Expect(303)), mutating=True,
        body={"request_ids": [Ref("request_id")]},
        spare_body={"request_ids": [Ref("spare_request_2")]}),
    Row("POST", UI_REQUESTS + "/deny", org_owner(Expect(303)), mutating=True,
        body={"request_ids": [Ref("request_id")], "reason": "no"},
        spare_body={"request_ids": [Ref("spare_request_3")], "reason": "no"}),
    Row("GET", UI_REQUESTS + "/{request_id:int}", org_owner()),
    Row("POST", UI_REQUESTS + "/{request_id:int}/approve", org_owner(Expect(303)),
        mutating=True, spare={"request_id": "spare_request_4"}),
    Row("GET", UI_REQUESTS + "/{request_id:int}/deny", org_owner()),
    Row("POST", UI_REQUESTS + "/{request_id:int}/deny", org_owner(Expect(303)), mutating=True,
        body={"reason": "no"}, spare={"request_id": "spare_request_5"}),
    Row("GET", UI_ACTIVE, org_owner()),
    Row("POST", UI_ACTIVE + "/confirm", org_owner(), body={"grant_ids": [Ref("pat_id")]}),
    Row("POST", UI_ACTIVE + "/revoke", org_owner(Expect(303)), mutating=True,
        body={"grant_ids": [Ref("pat_id")]}, spare_body={"grant_ids": [Ref("spare_grant_2")]}),
    Row("GET", SETTINGS + "/audit-log", org_owner()),
    # ---- an organization's GitHub Apps: owners only ---------------------------------------
    # (SPEC §6 lets site admins register apps too, and ``apps.create_app`` allows them; these
    # pages refuse them with every other non-owner: reported, asserted as it is.)
    Row("GET", SETTINGS + "/installations", org_owner()),
    Row("GET", APPS, org_owner()),
    Row("GET", APPS + "/new", org_owner()),
    Row("POST", APPS, org_owner(Expect(303)), mutating=True,
        body={"name": "Refused App", "permission.issues": "read", "install": "on"},
        spare_body={"name": "Spare App", "permission.issues": "read", "install": "on"}),
    Row("GET", APPS + "/{slug}", org_owner()),
    Row("POST", APPS + "/{slug}/installations", org_owner(Expect(303)), mutating=True,
        params={"slug": "dormant"}, spare={"slug": "dormant_two"}),
    Row("GET", APPS + "/{slug}/advanced", org_owner()),
    # ---- the user's own tokens (Developer settings) ---------------------------------------
    Row("GET", FINE_GRAINED, signed_in()),
    Row("GET", FINE_GRAINED + "/new", signed_in()),
    Row("POST", FINE_GRAINED, signed_in(Expect(303, location=FINE_GRAINED)), mutating=True,
        body={"name": "made-by-the-matrix", "resource_owner": "", "expiration": "30",
              "repository_selection": "none"}),
    Row("GET", FINE_GRAINED + "/{token_id:int}", own_token()),
    Row("GET", FINE_GRAINED + "/{token_id:int}/edit", own_token()),
    Row("POST", FINE_GRAINED + "/{token_id:int}/edit", own_token(Expect(303)), mutating=True,
        body=TOKEN_EDIT, spare={"token_id": "spare_fg_edit"}),
    Row("GET", FINE_GRAINED + "/{token_id:int}/regenerate", own_token()),
    Row("POST", FINE_GRAINED + "/{token_id:int}/regenerate", own_token(Expect(303)),
        mutating=True, body={"expiration": "30"}, spare={"token_id": "spare_fg_regenerate"}),
    Row("GET", FINE_GRAINED + "/{token_id:int}/delete", own_token()),
    Row("POST", FINE_GRAINED + "/{token_id:int}/delete",
        own_token(Expect(303, location=FINE_GRAINED)), mutating=True,
        spare={"token_id": "spare_fg_delete"}),
    Row("GET", CLASSIC, signed_in()),
    Row("GET", CLASSIC + "/new", signed_in()),
    Row("POST", CLASSIC, signed_in(Expect(303, location=CLASSIC)), mutating=True,
        body={"note": "made-by-the-matrix", "expiration": "30", "scopes": "repo"}),
    Row("GET", CLASSIC + "/{token_id:int}", own_token(), params={"token_id": "classic_token_id"}),
    Row("GET", CLASSIC + "/{token_id:int}/regenerate", own_token(),
        params={"token_id": "classic_token_id"}),
    Row("POST", CLASSIC + "/{token_id:int}/regenerate", own_token(Expect(303, location=CLASSIC)),
        mutating=True, body={"expiration": "30"}, params={"token_id": "classic_token_id"},
        spare={"token_id": "spare_classic_regenerate"}),
    Row("GET", CLASSIC + "/{token_id:int}/delete", own_token(),
        params={"token_id": "classic_token_id"}),
    Row("POST", CLASSIC + "/{token_id:int}/delete", own_token(Expect(303, location=CLASSIC)),
        mutating=True, params={"token_id": "classic_token_id"},
        spare={"token_id": "spare_classic_delete"}),
    # ---- enterprise owners ------------------------------------------------------------------
    Row("GET", "/settings/enterprises", signed_in()),
    Row("GET", "/enterprises/{enterprise}/settings", enterprise_owner(
        Expect(303, location="/enterprises/megacorp/settings/personal-access-tokens"))),
    Row("GET", "/enterprises/{enterprise}/settings/personal-access-tokens", enterprise_owner()),
    Row("POST", "/enterprises/{enterprise}/settings/personal-access-tokens",
        enterprise_owner(Expect(303)), mutating=True,
        body=ENTERPRISE_CHANGE, spare_body=ENTERPRISE_AS_IT_IS),
    # ---- site admins ------------------------------------------------------------------------
    Row("GET", MAILBOX, site_admin()),
    Row("GET", MAILBOX + "/{name}", site_admin()),
    Row("GET", MAILBOX + "/{name}/html", site_admin(Expect(200, message="<b>HTML</b>"))),
]  # fmt: skip


# ---- the generated cases ----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    row: Row | None
    principal: str
    route: tuple[str, str]

    @property
    def id(self) -> str:
        if self.row is None:
            return f"{self.route[0]} {self.route[1]} :: (no row in the table)"
        return f"{self.row.id} :: {self.principal}"


def cases() -> Iterator[Case]:
    known = {row.key for row in ROWS}
    for route in app_routes():
        if route not in known:
            yield Case(None, "", route)
    for row in ROWS:
        for principal in PRINCIPALS:
            yield Case(row, principal, row.key)


CASES = list(cases())


# ---- the world, once per database -------------------------------------------------------


@dataclass
class Matrix:
    world: PrincipalWorld
    client: httpx.Client
    snapshots: Snapshots
    baseline: Any = None

    def changes(self) -> str | None:
        """What changed since the last snapshot (``None``: nothing); the next test is judged
        from what is there now."""
        if not self.snapshots.may_have_changed():
            return None
        after = self.snapshots.take()
        if after == self.baseline:
            return None
        changes = diff(self.baseline, after)
        self.baseline = after
        return changes

    def start(self) -> None:
        self.snapshots.may_have_changed()
        self.baseline = self.snapshots.take()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def matrix(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    _database_templates: Any,
) -> Iterator[Matrix]:
    backend = request.param
    if backend == "postgres":
        request.getfixturevalue("postgres_server")
    folder = tmp_path_factory.mktemp(f"matrix-{backend}")
    url = _database_templates.fresh(backend, folder)
    sock = bind_free_port()
    host, port = sock.getsockname()[:2]
    runtime = Runtime(
        load_settings(
            _env_file=None, database_url=url, secret_key=TEST_SECRET_KEY,
            mailbox_dir=folder / "mail", base_url=f"http://{host}:{port}",
        )
    )  # fmt: skip
    server = None
    try:
        server = LiveServer.start(runtime, sock)
        world = build_world(server)
        snapshots = Snapshots(runtime.engine, watch=True)
        try:
            with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as client:
                found = Matrix(world, client, snapshots)
                found.start()
                yield found
        finally:
            snapshots.close()
    finally:
        if server is not None:
            server.stop()
        runtime.close()
        _database_templates.release(url)


def test_every_route_of_the_live_app_has_a_row_and_every_row_a_route(matrix: Matrix) -> None:
    app = matrix.world.server._server.config.app
    live = set(routes_of(app.routes))
    rows = {row.key for row in ROWS}
    assert not live - rows, "routes without a row in the matrix: " + ", ".join(
        f"{m} {p}" for m, p in sorted(live - rows)
    )
    assert not rows - live, "rows for routes that do not exist: " + ", ".join(
        f"{m} {p}" for m, p in sorted(rows - live)
    )


def _resolve(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, Ref):
        return values[value.key]
    if isinstance(value, list):
        return [_resolve(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, values) for k, v in value.items()}
    return value


def _path(row: Row, values: dict[str, Any], overrides: dict[str, Any]) -> str:
    template = row.path.replace(":int", "")
    names = [part.split("}")[0] for part in template.split("{")[1:]]
    params = {}
    for name in names:
        key = overrides.get(name, row.params.get(name, name))
        params[name] = values[key]
    return template.format(**{k: quote(str(v), safe="") for k, v in params.items()})


def _expected_message(expect: Expect, world: PrincipalWorld) -> str | None:
    if expect.message == LIFETIME:
        token_id = world.values["acme"]["lifetime_token_id"]
        return LIFETIME.format(base=world.server.url, token_id=token_id)
    return expect.message


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_authorization(matrix: Matrix, case: Case) -> None:
    if case.row is None:
        pytest.fail(
            f"{case.route[0]} {case.route[1]} has no row in the authorization matrix: add one "
            "to ROWS in tests/reliability/test_authorization_matrix.py saying who may call it",
            pytrace=False,
        )
    row, world = case.row, matrix.world
    principal = world.principals[case.principal]
    expect = row.expect[case.principal]
    values = world.values[principal.context if row.is_api else "acme"]
    spare = expect.succeeds and row.mutating
    path = _path(row, values, row.spare if spare else {})
    body = _resolve(row.spare_body if spare and row.spare_body is not None else row.body, values)
    headers = principal.headers()
    if row.is_api:
        if row.method == "POST":
            answer = matrix.client.request(row.method, path, json=body, headers=headers)
        else:
            answer = matrix.client.request(row.method, path, headers=headers)
    else:
        form = None
        if row.method == "POST":
            form = {**(body or {}), "authenticity_token": principal.csrf or ""}
        answer = matrix.client.request(row.method, path, data=form, headers=headers)
    matrix.client.cookies.clear()  # every call is made with the principal's own session only
    # Judged before the answer, so that a wrong answer that also changed something says both
    # (and the next test starts from what is there now).
    changed = matrix.changes()

    shown = f"{row.method} {path} as {case.principal}: {answer.status_code} {answer.text[:300]!r}"
    if changed and not spare:
        shown += f"\n... and it changed the database:\n{changed}"
    assert answer.status_code == expect.status, shown
    message = _expected_message(expect, world)
    if message is not None:
        if row.is_api:
            assert answer.json()["message"] == message, shown
        else:
            assert message in answer.text, shown
    if expect.location is not None:
        target = expect.location
        if target == LOGIN:
            back = path if row.method == "GET" else "/"
            target = "/login?" + "return_to=" + quote(back, safe="")
        assert answer.headers["location"] == target, shown
    if expect.check is not None:
        assert expect.check(answer.json()), shown
    if spare:
        # An allowed call that changes things did change something (a failure that redirects
        # with an error, for instance, rolls back and would otherwise pass for a success).
        assert changed, f"{row.method} {path} as {case.principal} was allowed but changed nothing"
    else:
        assert not changed, (
            f"{row.method} {path} as {case.principal} changed the database:\n{changed}"
        )
