"""Settings read once at start-up from ``PATGATE_*`` variables (and an optional ``.env``)."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

VAR_DIR = Path("var")
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "placeholder"}


class SettingsError(Exception):
    """The environment does not describe a runnable patgate; the message says what to fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PATGATE_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = f"sqlite:///{VAR_DIR / 'patgate.db'}"
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str | None = None
    smtp_url: str | None = None
    mail_from: str | None = None
    mailbox_dir: Path = VAR_DIR / "mail"
    digest_hour: Annotated[int, Field(ge=0, le=23)] = 9
    fine_grained_opt_in: bool = True
    development: bool = False

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if scheme not in {"sqlite", "postgresql", "postgresql+psycopg"}:
            raise ValueError(
                f"must start with sqlite:/// or postgresql+psycopg:// (got scheme {scheme!r})"
            )
        if scheme == "postgresql":
            # psycopg 3 is the only driver installed; SQLAlchemy's bare scheme means psycopg2.
            value = "postgresql+psycopg" + value[len("postgresql") :]
        return value

    @field_validator("base_url")
    @classmethod
    def _absolute_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as http://127.0.0.1:8000")
        return value.rstrip("/")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if urlsplit(value).scheme not in {"smtp", "smtps"}:
            raise ValueError("must be smtp://host[:port][?starttls=true] or smtps://host[:port]")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v3"

    @property
    def sender_address(self) -> str:
        return self.mail_from or f"patgate@{urlsplit(self.base_url).hostname}"

    @property
    def secret(self) -> bytes:
        """The key that signs session cookies and encrypts the one-time secret-reveal cookies
        (tokens are hashed without it); set by :func:`load_settings`."""
        assert self.secret_key is not None, "load_settings() fills the secret key"
        return self.secret_key.encode()


def load_settings(**overrides: object) -> Settings:
    """Read and validate the environment.

    Raises :class:`SettingsError` with one readable line per problem. With no
    ``PATGATE_SECRET_KEY`` a key is generated once and kept in ``./var/secret_key``.
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"PATGATE_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None
    if settings.secret_key is None:
        return settings.model_copy(update={"secret_key": _stored_secret_key()})
    if settings.secret_key.strip().lower() in PLACEHOLDER_SECRETS and not settings.development:
        raise SettingsError(
            "invalid configuration: PATGATE_SECRET_KEY is a placeholder; "
            "set a long random value "
            "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    return settings


def _stored_secret_key() -> str:
    path = VAR_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    log.warning("PATGATE_SECRET_KEY is not set: generated one and kept it in %s", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key
