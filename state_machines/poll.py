"""Voting in a poll.

The question comes with its options as buttons (up to 3) or a list (up to 10). Every message is one whole vote:
a tap is one option; with ``allow_multiple`` a typed list ("1, 3", "red and blue") chooses several.
Vote-change rule: while the poll is open a contact may vote again; the new choice replaces the old one and the
tallies move (the engine answers ``VoteRecorded(changed=True)``). A poll whose ``ends_at`` has passed
(``ctx.now``) is closed: no vote is cast. Votes are free (only replies are charged, by the engine).

Reads ``ctx.data["offers"]["polls"]`` at start and ``ctx.data["poll"]`` (loaded by the engine from
``state.data["poll_id"]``) afterwards. State: module "poll", step "vote" {poll_id, failures?} or "casting"
{poll_id} while the engine records the vote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from state_machines.base import Context, Effect, Event, Inbound, Reply, State, Step
from state_machines.choices import Option, as_buttons, match, match_many, offer
from state_machines.i18n import t, tn
from state_machines.menu import back_to_menu, find_offer

MODULE = "poll"


@dataclass(frozen=True)
class CastVote(Effect):
    """Record (or replace) this contact's vote; answered by VoteRecorded or VoteRejected."""

    poll_id: str
    option_ids: tuple[str, ...]


@dataclass(frozen=True)
class VoteRecorded:
    poll_id: str
    tallies: Mapping[str, int] = field(default_factory=dict)  # option id -> votes
    total: int = 0  # number of voters
    changed: bool = False  # the contact had voted before and the vote was replaced


@dataclass(frozen=True)
class VoteRejected:
    poll_id: str
    reason: str  # "closed" | "already_voted"


REJECTIONS = {"closed": "poll.closed", "already_voted": "poll.already_voted"}


def _closed(poll: Mapping[str, Any], ctx: Context) -> bool:
    ends_at = poll.get("ends_at")
    return poll.get("status", "active") == "closed" or (ends_at is not None and ends_at <= ctx.now)


def _options(poll: Mapping[str, Any]) -> list[Option]:
    return [Option(str(o["id"]), str(o["text"])) for o in poll.get("options") or []]


def _current(state: State, ctx: Context) -> Mapping[str, Any] | None:
    poll_id = str(state.data.get("poll_id"))
    poll = ctx.data.get("poll") or find_offer(ctx, "poll", poll_id)
    return poll if poll and str(poll.get("id")) == poll_id else None


def _say(key: str, ctx: Context) -> Step:
    return back_to_menu(ctx, t(key, ctx.language))


def _closed_step(poll: Mapping[str, Any], ctx: Context) -> Step:
    """Closed: say so, with the final results when they are public, then the menu."""
    lines = [t("poll.closed", ctx.language)]
    if poll.get("show_results", True):
        tallies = {str(o["id"]): int(o.get("votes") or 0) for o in poll.get("options") or []}
        voters = poll.get("voters")  # the engine loads polls.voter_count; without it, one vote per voter
        voters = sum(tallies.values()) if voters is None else int(voters)
        lines += ["", _tallies(poll, tallies, voters, ctx.language, final=True)]
    return back_to_menu(ctx, "\n".join(lines), exclude={f"poll:{poll['id']}"})


def start(poll_id: str, state: State, ctx: Context) -> Step:
    poll = find_offer(ctx, "poll", poll_id)  # an old menu's tap finds a closed poll too (menu.find_offer)
    if poll is None or poll.get("status", "active") == "draft":
        return _say("poll.unavailable", ctx)
    if _closed(poll, ctx):
        return _closed_step(poll, ctx)
    return Step(State(MODULE, "vote", {"poll_id": poll_id}), (_question(poll, ctx.language),))


def step(state: State, event: Event | VoteRecorded | VoteRejected, ctx: Context) -> Step:
    poll = _current(state, ctx)
    if poll is None:
        return _say("poll.unavailable", ctx) if isinstance(event, Inbound) else Step(State())
    match event:
        case VoteRecorded():  # the results, with the menu as the next step
            return back_to_menu(ctx, _results(poll, event, ctx.language))
        case VoteRejected(reason="closed"):
            return _closed_step(poll, ctx)
        case VoteRejected():
            return _say(REJECTIONS.get(event.reason, "poll.closed"), ctx)
        case Inbound() if state.step == "vote":
            return _vote(poll, state, event, ctx)
    return Step(state)


def reprompt(state: State, ctx: Context) -> tuple[Reply, ...]:
    poll = _current(state, ctx)
    if poll is None or state.step != "vote":
        return ()
    return (_question(poll, ctx.language),)


def cancel(state: State, ctx: Context) -> Step:
    return Step(State())


def _question(poll: Mapping[str, Any], lang: str, error: str = "") -> Reply:
    """The question with its options; after an unusable vote, what was wrong first, then the question again."""
    body = str(poll.get("question") or "")
    if poll.get("allow_multiple"):
        body += "\n" + t("poll.multi_hint", lang)
    return offer(
        f"{error}\n\n{body}" if error else body, _options(poll), list_button=t("common.choose", lang)
    )


def _vote(poll: Mapping[str, Any], state: State, event: Inbound, ctx: Context) -> Step:
    if _closed(poll, ctx):
        return _closed_step(poll, ctx)
    options = _options(poll)
    if poll.get("allow_multiple"):
        picked = match_many(event, options)
        key = "poll.invalid_multiple"
    else:
        one = match(event, options)
        picked, key = (
            ([one] if one else None),
            "common.invalid_tap" if as_buttons(options) else "poll.invalid",
        )
    if not picked:
        failed = State(MODULE, "vote", {**state.data, "failures": int(state.data.get("failures", 0)) + 1})
        error = t(key, ctx.language, count=len(options))
        return Step(failed, (_question(poll, ctx.language, error=error),))
    chosen = tuple(o.id for o in options if o in picked)  # in the poll's order
    poll_id = str(poll["id"])
    return Step(State(MODULE, "casting", {"poll_id": poll_id}), effects=(CastVote(poll_id, chosen),))


def _percent(votes: int, total: int) -> int:
    return (200 * votes + total) // (2 * total) if total else 0  # rounded half up


def _results(poll: Mapping[str, Any], recorded: VoteRecorded, lang: str) -> str:
    first = t("poll.changed" if recorded.changed else "poll.thanks", lang)
    if not poll.get("show_results", True):
        return first
    return "\n".join([first, "", _tallies(poll, recorded.tallies, recorded.total, lang)])


def _tallies(
    poll: Mapping[str, Any], tallies: Mapping[str, int], total: int, lang: str, final: bool = False
) -> str:
    lines = [tn("poll.results_final" if final else "poll.results", lang, total)]
    for o in _options(poll):
        votes = int(tallies.get(o.id, 0))
        lines.append(f"{o.title}: {votes} ({_percent(votes, total)}%)")
    return "\n".join(lines)
