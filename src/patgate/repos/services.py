"""Repositories and issues."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from patgate.accounts.models import Account, User
from patgate.authz.decision import RepoFacts
from patgate.context import Context
from patgate.db import MAX_ID
from patgate.errors import AlreadyExists, InvalidInput, NotFound
from patgate.orgs.models import Organization
from patgate.orgs.services import org_facts
from patgate.repos.models import Issue, Repository, Visibility

NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
MAX_TITLE = 256
MAX_BODY = 65536


def split_full_name(full_name: str) -> tuple[str, str]:
    owner, sep, name = (full_name or "").partition("/")
    if not sep or not owner or not name:
        raise InvalidInput(f"repository {full_name!r} is not OWNER/NAME", field="name")
    return owner, name


def create_repo(
    ctx: Context,
    owner: Account,
    name: str,
    *,
    visibility: str = Visibility.PRIVATE,
    description: str | None = None,
) -> Repository:
    """Create a repository; internal ones need an organization owner."""
    if not NAME_PATTERN.match(name or "") or name in {".", ".."}:
        raise InvalidInput(
            f"repository name {name!r} may contain only letters, digits, '.', '-' and '_' "
            "(1 to 100 characters)",
            field="name",
            resource="Repository",
        )
    if visibility not in [v.value for v in Visibility]:
        raise InvalidInput(
            f"visibility must be public, private or internal, not {visibility!r}",
            field="visibility",
        )
    if visibility == Visibility.INTERNAL and not isinstance(owner, Organization):
        raise InvalidInput("internal repositories belong to organizations", field="visibility")
    if find_repo(ctx, owner, name) is not None:
        raise AlreadyExists(
            f"repository {owner.login}/{name} already exists", field="name", resource="Repository"
        )
    repo = Repository(
        owner_id=owner.id,
        name=name,
        name_key=name.lower(),
        visibility=visibility,
        description=description,
        created_at=ctx.now,
        updated_at=ctx.now,
        pushed_at=None,
    )
    ctx.session.add(repo)
    ctx.session.flush()
    return repo


def find_repo(ctx: Context, owner: Account, name: str) -> Repository | None:
    return ctx.session.scalar(
        select(Repository).where(
            Repository.owner_id == owner.id, Repository.name_key == name.lower()
        )
    )


def find_account(ctx: Context, login: str) -> Account | None:
    return ctx.session.scalar(select(Account).where(Account.login_key == login.lower()))


def get_account(ctx: Context, login: str) -> Account:
    account = find_account(ctx, login)
    if account is None:
        raise NotFound("user or organization", login)
    return account


def get_repo(ctx: Context, owner_login: str, name: str) -> Repository:
    """The repository ``owner/name`` (any case); raise :class:`NotFound`."""
    owner = find_account(ctx, owner_login)
    repo = find_repo(ctx, owner, name) if owner else None
    if repo is None:
        raise NotFound("repository", f"{owner_login}/{name}")
    return repo


def repos_of(ctx: Context, owner: Account) -> list[Repository]:
    return list(
        ctx.session.scalars(
            select(Repository).where(Repository.owner_id == owner.id).order_by(Repository.id)
        )
    )


def repos_by_ids(ctx: Context, ids: list[int] | set[int]) -> list[Repository]:
    if not ids:
        return []
    return list(
        ctx.session.scalars(
            select(Repository).where(Repository.id.in_(ids)).order_by(Repository.name_key)
        )
    )


def resolve_names(ctx: Context, owner: Account, names: list[str]) -> list[Repository]:
    """The owner's repositories with these names.

    Raises :class:`InvalidInput` naming the first one that does not exist.
    """
    repos = []
    for name in names:
        repo = find_repo(ctx, owner, name.split("/")[-1])
        if repo is None:
            raise InvalidInput(
                f"repository {owner.login}/{name} does not exist", field="repositories"
            )
        repos.append(repo)
    return repos


def repo_facts(ctx: Context, repo: Repository) -> RepoFacts:
    org = ctx.session.get(Organization, repo.owner_id)
    return RepoFacts(
        id=repo.id,
        owner_id=repo.owner_id,
        visibility=repo.visibility,
        org=org_facts(ctx, org) if org is not None else None,
    )


def create_issue(
    ctx: Context, repo: Repository, *, title: str, body: str | None, author: User
) -> Issue:
    if not isinstance(title, str) or not title.strip():
        raise InvalidInput(
            "title is required", field="title", resource="Issue", code="missing_field"
        )
    if len(title) > MAX_TITLE:
        raise InvalidInput(
            f"title is longer than {MAX_TITLE} characters", field="title", resource="Issue"
        )
    if body is not None and (not isinstance(body, str) or len(body) > MAX_BODY):
        raise InvalidInput(
            f"body must be text of at most {MAX_BODY} characters", field="body", resource="Issue"
        )
    # The row lock (PostgreSQL) or the write lock (SQLite, BEGIN IMMEDIATE) serialises numbering.
    ctx.session.scalar(select(Repository.id).where(Repository.id == repo.id).with_for_update())
    number = (
        ctx.session.scalar(select(func.max(Issue.number)).where(Issue.repository_id == repo.id))
        or 0
    ) + 1
    issue = Issue(
        repository_id=repo.id,
        number=number,
        title=title,
        body=body,
        state="open",
        author_id=author.id,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(issue)
    repo.updated_at = ctx.now
    ctx.session.flush()
    return issue


def list_issues(
    ctx: Context, repo: Repository, *, state: str = "open", page: int, per_page: int
) -> tuple[list[Issue], int]:
    stmt = select(Issue).where(Issue.repository_id == repo.id)
    if state != "all":
        stmt = stmt.where(Issue.state == state)
    total = ctx.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = ctx.session.scalars(
        stmt.order_by(Issue.number.desc()).limit(per_page).offset((page - 1) * per_page)
    ).all()
    return list(rows), total


def get_issue(ctx: Context, repo: Repository, number: int) -> Issue:
    if not 0 < number <= MAX_ID:
        raise NotFound("issue", number)
    issue = ctx.session.scalar(
        select(Issue).where(Issue.repository_id == repo.id, Issue.number == number)
    )
    if issue is None:
        raise NotFound("issue", number)
    return issue


def open_issue_count(ctx: Context, repo: Repository) -> int:
    return (
        ctx.session.scalar(
            select(func.count())
            .select_from(Issue)
            .where(Issue.repository_id == repo.id, Issue.state == "open")
        )
        or 0
    )
