"""`chatnation org create|list|show`."""

from __future__ import annotations

import typer

from engine.cli.common import emit, org_pool, pools, run, settings
from engine.cli.errors import Duplicate, NotFound

app = typer.Typer(help="Organisations (tenants) and their WhatsApp numbers.", no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Option(..., help="Display name"),
    phone_number_id: str = typer.Option(..., help="The WhatsApp Cloud API phone_number_id that routes to it"),
    access_token: str = typer.Option(..., help="The Cloud API access token used to send its replies"),
    tokens: int = typer.Option(1000, min=0, help="Opening wallet balance"),
    slug: str | None = typer.Option(None),
    language: str = typer.Option("en", help="Default language of its bot: en or sw"),
    business_account_id: str | None = typer.Option(
        None, "--business-account-id", help="Its WhatsApp Business Account id (WABA: message templates)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Register an organisation with its WhatsApp number, token and a funded wallet."""
    import asyncpg

    from engine.orgs import NewOrganization, create_organization, slugify

    s = settings()
    taken = {  # the unique constraints an organisation's row has, and what the operator gave for each
        "uq_organizations_whatsapp_phone": f"phone_number_id {phone_number_id!r}",
        "organizations_slug_key": f"slug {slug or slugify(name)!r}",
    }

    async def body() -> str:
        async with pools(s) as (_, pool):
            try:
                org_id = await create_organization(
                    pool,
                    NewOrganization(
                        name=name,
                        phone_number_id=phone_number_id,
                        access_token=access_token,
                        slug=slug,
                        tokens=tokens,
                        language=language,
                        business_account_id=business_account_id,
                    ),
                )
            except asyncpg.UniqueViolationError as err:
                if err.constraint_name not in taken:
                    raise
                raise Duplicate(f"an organisation with {taken[err.constraint_name]}") from None
            return str(org_id)

    emit(
        [{"id": run(body), "name": name, "phone_number_id": phone_number_id, "tokens": tokens}],
        as_json=as_json,
    )


async def _all_orgs(owner_url: str) -> list[dict[str, object]]:
    import asyncpg

    conn = await asyncpg.connect(owner_url)  # listing every tenant is an owner's job, not a tenant's
    try:
        rows = await conn.fetch(
            """SELECT o.id, o.name, o.slug, o.whatsapp_phone_id AS phone_number_id,
                      o.whatsapp_business_id AS business_account_id, o.status, w.balance
               FROM organizations o LEFT JOIN wallets w ON w.organization_id = o.id ORDER BY o.created_at"""
        )
        return [dict(r) for r in rows]
    finally:
        await conn.close()


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every organisation with its number and wallet balance."""
    s = settings()

    async def body() -> list[dict[str, object]]:
        async with pools(s) as (urls, _):
            return await _all_orgs(urls.owner)

    emit(run(body), as_json=as_json, title="organisations", empty="no organisations")


@app.command("show")
def show(
    org: str = typer.Argument(..., help="id, slug or phone_number_id"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One organisation."""
    s = settings()

    async def body() -> list[dict[str, object]]:
        async with pools(s) as (urls, _):
            return [
                o
                for o in await _all_orgs(urls.owner)
                if org in (str(o["id"]), o["slug"], o["phone_number_id"])
            ]

    rows = run(body)
    if not rows:
        raise NotFound(f"no organisation {org!r}")
    emit(rows, as_json=as_json)


@app.command("update")
def update(
    org: str = typer.Argument(..., help="id or phone_number_id"),
    business_account_id: str | None = typer.Option(
        None, "--business-account-id", help="Its WhatsApp Business Account id (WABA: message templates)"
    ),
    access_token: str | None = typer.Option(None, help="A new Cloud API access token"),
    send_rate: float | None = typer.Option(
        None, "--send-rate", min=1, max=1000, help="Messages per second its number may send (Meta's tier)"
    ),
    messaging_limit: str | None = typer.Option(
        None,
        "--messaging-limit",
        help="Unique users reached outside the window per 24 h: 250, 2000, 10000, 100000 or unlimited",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Change an organisation's business account, token, send rate or messaging limit."""
    from engine.orgs import update_organization

    changes: dict[str, object] = {}
    if send_rate is not None:
        changes["send_rate_per_second"] = send_rate
    if messaging_limit is not None:
        from engine.messaging_limit import parse_limit

        try:
            changes["messaging_limit"] = parse_limit(messaging_limit)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--messaging-limit") from None
    s = settings()

    async def body() -> str:
        async with org_pool(s, org) as (pool, org_id):
            if not await update_organization(
                pool,
                org_id,
                business_account_id=business_account_id,
                access_token=access_token,
                settings=changes,
            ):
                raise NotFound(f"no organisation {org!r}")
            return str(org_id)

    org_id = run(body)
    shown = {k: v for k, v in changes.items()}
    if business_account_id is not None:
        shown["business_account_id"] = business_account_id
    if access_token is not None:
        shown["access_token"] = "(changed)"
    emit([{"id": org_id, **shown}], as_json=as_json)
