"""Domain errors, raised by services and mapped to HTTP in one place (``web/errors.py``)
and to exit code 2 in the CLI.

    PatgateError
    ├── NotFound             the thing does not exist, or the caller may not know it does
    ├── InvalidInput         a value is malformed (field, code as GitHub's 422 ``errors[]``)
    │   └── AlreadyExists    a unique name is taken
    ├── Forbidden            the caller is known but may not do this
    ├── PolicyRefused        an organization or enterprise policy says no
    └── InvalidTransition    a request or grant is not in a state that allows this
"""

from __future__ import annotations


class PatgateError(Exception):
    """Base of every error a service raises on purpose; ``str()`` is one readable line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(PatgateError):
    def __init__(self, what: str, key: object = None) -> None:
        super().__init__(f"{what} not found" if key is None else f"{what} {key!r} not found")
        self.what = what


class InvalidInput(PatgateError):
    def __init__(
        self, message: str, *, field: str, resource: str = "", code: str = "invalid"
    ) -> None:
        super().__init__(message)
        self.field = field
        self.resource = resource
        self.code = code


class AlreadyExists(InvalidInput):
    def __init__(self, message: str, *, field: str, resource: str = "") -> None:
        super().__init__(message, field=field, resource=resource, code="already_exists")


class Forbidden(PatgateError):
    pass


class PolicyRefused(PatgateError):
    pass


class InvalidTransition(PatgateError):
    def __init__(
        self, message: str, *, ids: list[int] | None = None, resource: str = "PatRequest"
    ) -> None:
        super().__init__(message)
        self.ids = ids or []
        self.resource = resource
