"""Money and local time as people read them in Kenya, for the conversation modules (the ticket and check-in
machines) and the content import. Pure: no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Africa/Nairobi"


def kes(amount: Decimal) -> str:
    """``KES 1,500``; cents only when there are some."""
    amount = Decimal(amount)
    return f"KES {amount:,.0f}" if amount == amount.to_integral_value() else f"KES {amount:,.2f}"


def zone(name: str) -> tzinfo:
    """The named time zone; East Africa Time when the name is unknown (the system may lack tz data)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone(timedelta(hours=3), "EAT")


def local_time(moment: datetime, zone_name: str = DEFAULT_TIMEZONE) -> str:
    """``14/03/2026 18:00`` in the given time zone (naive datetimes are taken as local already)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(zone(zone_name))
    return f"{moment:%d/%m/%Y %H:%M}"
