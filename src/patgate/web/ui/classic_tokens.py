"""The user's Settings → Developer settings → Personal access tokens → Tokens (classic)
(``/settings/tokens``), as on GitHub: generate (note, expiration, scopes), view, regenerate
and delete. The secret is shown once (:mod:`patgate.web.ui.reveal`); someone else's token
is a 404.
"""

from __future__ import annotations

from starlette.responses import Response

from patgate.errors import InvalidInput
from patgate.tokens import services as tokens
from patgate.tokens.models import ClassicToken
from patgate.tokens.permissions import CLASSIC_SCOPES
from patgate.web.ui import reveal
from patgate.web.ui.developer_settings import (
    DEFAULT_EXPIRATION,
    EXPIRATIONS,
    expires_at_of,
    field_for,
    regenerate_page,
    settings_page,
)
from patgate.web.ui.pages import Page, Routes

routes = Routes()

CLASSIC = "/settings/tokens"
CLASSIC_NEW = CLASSIC + "/new"
CLASSIC_ONE = CLASSIC + "/{token_id:int}"


def _url(token_id: int) -> str:
    return f"{CLASSIC}/{token_id}"


# GitHub's tree of classic scopes: a parent scope implies its children.
SCOPE_TREE: dict[str, tuple[str, ...]] = {
    "repo": ("repo:status", "repo_deployment", "public_repo", "repo:invite", "security_events"),
    "workflow": (),
    "write:packages": ("read:packages",),
    "delete:packages": (),
    "admin:org": ("write:org", "read:org", "manage_runners:org"),
    "admin:public_key": ("write:public_key", "read:public_key"),
    "admin:repo_hook": ("write:repo_hook", "read:repo_hook"),
    "admin:org_hook": (),
    "gist": (),
    "notifications": (),
    "user": ("read:user", "user:email", "user:follow"),
    "delete_repo": (),
    "write:discussion": ("read:discussion",),
    "admin:enterprise": ("manage_billing:enterprise", "read:enterprise"),
    "audit_log": ("read:audit_log",),
    "codespace": (),
    "project": ("read:project",),
    "admin:gpg_key": ("write:gpg_key", "read:gpg_key"),
    "admin:ssh_signing_key": ("write:ssh_signing_key", "read:ssh_signing_key"),
    "site_admin": (),
}
SCOPE_DESCRIPTIONS = {
    "repo": "Full control of private repositories",
    "repo:status": "Access commit status",
    "repo_deployment": "Access deployment status",
    "public_repo": "Access public repositories",
    "repo:invite": "Access repository invitations",
    "security_events": "Read and write security events",
    "workflow": "Update GitHub Action workflows",
    "write:packages": "Upload packages to GitHub Package Registry",
    "read:packages": "Download packages from GitHub Package Registry",
    "delete:packages": "Delete packages from GitHub Package Registry",
    "admin:org": "Full control of orgs and teams, read and write org projects",
    "write:org": "Read and write org and team membership, read and write org projects",
    "read:org": "Read org and team membership, read org projects",
    "manage_runners:org": "Manage org runners and runner groups",
    "admin:public_key": "Full control of user public keys",
    "write:public_key": "Write user public keys",
    "read:public_key": "Read user public keys",
    "admin:repo_hook": "Full control of repository hooks",
    "write:repo_hook": "Write repository hooks",
    "read:repo_hook": "Read repository hooks",
    "admin:org_hook": "Full control of organization hooks",
    "gist": "Create gists",
    "notifications": "Access notifications",
    "user": "Update ALL user data",
    "read:user": "Read ALL user profile data",
    "user:email": "Access user email addresses (read-only)",
    "user:follow": "Follow and unfollow users",
    "delete_repo": "Delete repositories",
    "write:discussion": "Read and write team discussions",
    "read:discussion": "Read team discussions",
    "admin:enterprise": "Full control of enterprises",
    "manage_billing:enterprise": "Read and write enterprise billing data",
    "read:enterprise": "Read enterprise profile data",
    "audit_log": "Full control of audit log",
    "read:audit_log": "Read access of audit log",
    "codespace": "Full control of codespaces",
    "project": "Full control of projects",
    "read:project": "Read access of projects",
    "admin:gpg_key": "Full control of public user GPG keys",
    "write:gpg_key": "Write public user GPG keys",
    "read:gpg_key": "Read public user GPG keys",
    "admin:ssh_signing_key": "Full control of public user SSH signing keys",
    "write:ssh_signing_key": "Write public user SSH signing keys",
    "read:ssh_signing_key": "Read public user SSH signing keys",
    "site_admin": "Full control of site administration",
}


def _scope_tree() -> list[tuple[str, tuple[str, ...]]]:
    """Every scope of the catalogue, in GitHub's tree (any other scope at the top level)."""
    placed = set(SCOPE_TREE) | {child for children in SCOPE_TREE.values() for child in children}
    tree = [(scope, children) for scope, children in SCOPE_TREE.items() if scope in CLASSIC_SCOPES]
    tree += [(scope, ()) for scope in CLASSIC_SCOPES if scope not in placed]
    return tree


SCOPES = _scope_tree()


def _classic(page: Page) -> ClassicToken:
    return tokens.get_classic(page.ctx, page.param("token_id"), user=page.signed_in)


def _scopes_of(token: ClassicToken) -> list[str]:
    return list(token.scopes.get("scopes", []))


@routes.get(CLASSIC)
def classic_list(page: Page) -> Response:
    secret = reveal.take(page, CLASSIC)
    response = settings_page(
        page,
        "settings/developer/classic_list.html",
        "classic",
        tokens=[(t, _scopes_of(t)) for t in tokens.classic_of(page.ctx, page.signed_in)],
        new_secret=secret,
    )
    return reveal.forget(page, response, where=CLASSIC)


def _classic_form(
    page: Page,
    *,
    note: str = "",
    expiration: str = DEFAULT_EXPIRATION,
    expires_on: str = "",
    scopes: set[str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return settings_page(
        page,
        "settings/developer/classic_new.html",
        "classic",
        status=status,
        note=note,
        expiration=expiration,
        expires_on=expires_on,
        scopes=scopes or set(),
        scope_tree=SCOPES,
        descriptions=SCOPE_DESCRIPTIONS,
        expirations=EXPIRATIONS,
        errors=errors or {},
    )


@routes.get(CLASSIC_NEW)
def classic_new(page: Page) -> Response:
    return _classic_form(page)


@routes.post(CLASSIC)
def classic_create(page: Page) -> Response:
    note = page.field("note").strip()
    scopes = set(page.fields("scopes"))
    errors: dict[str, str] = {}
    if not note:
        errors["note"] = "Enter a note: what is this token for?"
    issued = None
    expires_at = None
    try:
        expires_at = expires_at_of(page)
    except InvalidInput as exc:
        errors["expiration"] = exc.message
    if not errors:
        try:
            issued = tokens.create_classic(
                page.ctx, page.signed_in, note=note, scopes=sorted(scopes), expires_at=expires_at
            )
        except InvalidInput as exc:
            errors[field_for(exc.field, {"note", "expiration", "scopes"})] = exc.message
    if issued is None:
        return _classic_form(
            page,
            note=note,
            expiration=page.field("expiration", DEFAULT_EXPIRATION),
            expires_on=page.field("expires_on"),
            scopes=scopes,
            errors=errors,
            status=422,
        )
    return reveal.hand_over(
        page,
        page.redirect(CLASSIC, flash=f"Created {note}."),
        where=CLASSIC,
        secret=issued.secret,
    )


@routes.get(CLASSIC_ONE)
def classic_show(page: Page) -> Response:
    token = _classic(page)
    return settings_page(
        page,
        "settings/developer/classic_show.html",
        "classic",
        token=token,
        scopes=_scopes_of(token),
        descriptions=SCOPE_DESCRIPTIONS,
        token_url=_url(token.id),
    )


def _regenerate_page(
    page: Page, token: ClassicToken, errors: dict[str, str] | None = None
) -> Response:
    return regenerate_page(
        page, token, kind="classic", title=token.note, back=_url(token.id), list_url=CLASSIC,
        list_label="Tokens (classic)", notes=[], errors=errors,
    )  # fmt: skip


@routes.get(CLASSIC_ONE + "/regenerate")
def classic_regenerate_form(page: Page) -> Response:
    return _regenerate_page(page, _classic(page))


@routes.post(CLASSIC_ONE + "/regenerate")
def classic_regenerate(page: Page) -> Response:
    token = _classic(page)
    issued = None
    errors: dict[str, str] = {}
    try:
        issued = tokens.regenerate_classic(page.ctx, token, expires_at=expires_at_of(page))
    except InvalidInput as exc:
        errors["expiration"] = exc.message
    if issued is None:
        return _regenerate_page(page, token, errors)
    return reveal.hand_over(
        page,
        page.redirect(
            CLASSIC, flash=f"Regenerated {token.note}: the previous secret stopped working."
        ),
        where=CLASSIC,
        secret=issued.secret,
    )


@routes.get(CLASSIC_ONE + "/delete")
def classic_delete_form(page: Page) -> Response:
    token = _classic(page)
    return settings_page(
        page,
        "settings/developer/delete.html",
        "classic",
        title=token.note,
        action=_url(token.id) + "/delete",
        back=_url(token.id),
        list_url=CLASSIC,
        list_label="Tokens (classic)",
        consequence="Any applications or scripts using this token will no longer be able to "
        "access the API.",
    )


@routes.post(CLASSIC_ONE + "/delete")
def classic_delete(page: Page) -> Response:
    token = _classic(page)
    note = token.note
    tokens.delete_classic(page.ctx, token)
    return page.redirect(CLASSIC, flash=f"Deleted {note}.")
