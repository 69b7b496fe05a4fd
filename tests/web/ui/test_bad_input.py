"""Hand-made form submissions and URLs the pages never produce: a 404 or a 422 with the
field's message, never a server error, and nothing changed."""

from __future__ import annotations

from datetime import timedelta

from patgate.accounts import services as accounts
from patgate.context import CLI_ACTOR
from patgate.tokens import services as tokens
from web.ui.conftest import Clients, Site, csrf_token
from web.ui.test_developer_settings import FINE_GRAINED, field_error, generate, tokens_of

HUGE_ID = "99999999999999999999"


def test_ids_too_large_for_any_row_are_not_found(site: Site, clients: Clients) -> None:
    mona = clients("mona")
    for path in (
        f"{FINE_GRAINED}/{HUGE_ID}",
        f"{FINE_GRAINED}/{HUGE_ID}/edit",
        f"{FINE_GRAINED}/2147483648/regenerate",
        f"/settings/tokens/{HUGE_ID}",
        f"/settings/tokens/{HUGE_ID}/delete",
    ):
        assert mona.get(path).status_code == 404, path
    token = csrf_token(mona.get(f"{FINE_GRAINED}/new").text)
    answer = mona.post(f"{FINE_GRAINED}/{HUGE_ID}/delete", data={"authenticity_token": token})
    assert answer.status_code == 404


def test_digits_of_other_scripts_and_unknown_choices_are_refused(
    site: Site, clients: Clients
) -> None:
    mona = clients("mona")
    superscript = generate(
        mona, name="sup", resource_owner="acme", repository_selection="subset",
        repository_ids="²",
    )  # fmt: skip
    assert superscript.status_code == 422
    assert field_error(superscript.text, "repositories") == "Select at least one repository."

    unknown = generate(mona, name="odd", resource_owner="acme", repository_selection="everything")
    assert unknown.status_code == 422
    assert field_error(unknown.text, "repositories") == (
        "Choose which repositories the token can access."
    )

    # No justification field for an owner that reviews nothing: what is sent is ignored.
    unasked = generate(mona, name="solo", resource_owner="mona", reason="r" * 10_000)
    assert unasked.status_code == 303
    tokens_made = ["solo"]

    control = generate(mona, name="a\x00b", resource_owner="mona")
    assert control.status_code == 422
    assert "control characters" in field_error(control.text, "name")
    assert tokens_of(site) == tokens_made


def test_editing_refuses_what_creating_refuses(site: Site, clients: Clients) -> None:
    def make(ctx, _org):  # type: ignore[no-untyped-def]
        mona = accounts.get_user(ctx, "mona")
        return tokens.create_fine_grained(
            ctx, mona, name="kept", resource_owner=mona,
            expires_at=ctx.now + timedelta(days=30), description="as it was", actor=CLI_ACTOR,
        ).token.id  # fmt: skip

    token_id = site.run(make)
    mona = clients("mona")
    edit = f"{FINE_GRAINED}/{token_id}/edit"
    form = {"authenticity_token": csrf_token(mona.get(edit).text), "expiration": "keep"}

    too_long = mona.post(edit, data={**form, "description": "d" * 10_000})
    unknown = mona.post(edit, data={**form, "repository_selection": "weird"})

    assert too_long.status_code == 422
    assert field_error(too_long.text, "description") == "description is too long"
    assert unknown.status_code == 422
    assert site.run(
        lambda ctx, _org: (
            tokens.get_fine_grained(ctx, token_id).description,
            tokens.get_fine_grained(ctx, token_id).repository_selection,
        )
    ) == ("as it was", "none")
