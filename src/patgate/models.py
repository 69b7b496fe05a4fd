"""Imports every domain's models so that ``Base.metadata`` is complete (Alembic, tests)."""

from patgate.accounts.models import Account, User
from patgate.approvals.models import Grant, GrantRepository, RequestRepository, TokenRequest
from patgate.apps.models import App, Installation, InstallationToken
from patgate.audit.models import AuditEntry
from patgate.authz.models import AuthzGeneration
from patgate.db import Base
from patgate.notifications.models import DeliveryAttempt, OutboxMessage
from patgate.orgs.models import Enterprise, EnterpriseOwner, Membership, Organization
from patgate.repos.models import Issue, Repository
from patgate.tokens.models import ClassicToken, FineGrainedToken, TokenRepository

__all__ = [
    "Account", "App", "AuditEntry", "AuthzGeneration", "Base", "ClassicToken", "DeliveryAttempt",
    "Enterprise",
    "EnterpriseOwner", "FineGrainedToken", "Grant", "GrantRepository", "Installation",
    "InstallationToken", "Issue", "Membership", "Organization", "OutboxMessage", "Repository",
    "RequestRepository", "TokenRepository", "TokenRequest", "User",
]  # fmt: skip
