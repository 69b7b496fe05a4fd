"""Users: creation, lookup, passwords and suspension."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from patgate.accounts.models import Account, User
from patgate.context import Context
from patgate.errors import AlreadyExists, InvalidInput, NotFound

# GitHub's rule: alphanumerics and single hyphens, not at either end, at most 39 characters.
LOGIN_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher()


def validate_login(login: str, *, resource: str = "User") -> str:
    """Return ``login`` if it follows GitHub's rules, else raise :class:`InvalidInput`."""
    if not LOGIN_PATTERN.match(login or ""):
        raise InvalidInput(
            f"login {login!r} may only contain alphanumeric characters or single hyphens, "
            "cannot begin or end with a hyphen, and has at most 39 characters",
            field="login",
            resource=resource,
        )
    return login


def ensure_login_free(ctx: Context, login: str, *, resource: str = "User") -> None:
    """Raise :class:`AlreadyExists` if a user or organization has this login (any case)."""
    taken = ctx.session.scalar(select(Account.id).where(Account.login_key == login.lower()))
    if taken is not None:
        raise AlreadyExists(f"login {login!r} is already taken", field="login", resource=resource)


def create_user(
    ctx: Context,
    login: str,
    *,
    email: str,
    password: str | None = None,
    site_admin: bool = False,
    name: str | None = None,
) -> User:
    """Create a user. Without a password the user exists but cannot sign in.

    Raises :class:`InvalidInput` for a malformed login, email or short password and
    :class:`AlreadyExists` when the login is taken by a user or an organization.
    """
    validate_login(login)
    if not EMAIL_PATTERN.match(email or ""):
        raise InvalidInput(f"email {email!r} is not a valid address", field="email")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"password must have at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    ensure_login_free(ctx, login)
    user = User(
        login=login,
        login_key=login.lower(),
        name=name,
        email=email,
        password_hash=_hasher.hash(password) if password is not None else None,
        site_admin=site_admin,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(user)
    ctx.session.flush()
    return user


def find_user(ctx: Context, login: str) -> User | None:
    return ctx.session.scalar(select(User).where(User.login_key == login.lower()))


def get_user(ctx: Context, login: str) -> User:
    """Return the user with this login (any case); raise :class:`NotFound` otherwise."""
    user = find_user(ctx, login)
    if user is None:
        raise NotFound("user", login)
    return user


def get_user_by_id(ctx: Context, user_id: int) -> User:
    user = ctx.session.get(User, user_id)
    if user is None:
        raise NotFound("user", user_id)
    return user


def count_users(ctx: Context) -> int:
    return ctx.session.scalar(select(func.count()).select_from(User)) or 0


def set_suspended(ctx: Context, login: str, suspended: bool) -> User:
    """Suspend or unsuspend; a suspended user's tokens authenticate nowhere."""
    user = get_user(ctx, login)
    user.suspended_at = ctx.now if suspended else None
    user.updated_at = ctx.now
    return user


def verify_password(user: User, password: str) -> bool:
    """True if ``password`` is the user's; always False for users without a password."""
    if user.password_hash is None:
        _hasher.hash(password)  # same work either way, so timing does not reveal which
        return False
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
