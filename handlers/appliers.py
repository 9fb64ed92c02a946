"""Every effect's one applier, in one table: grep an effect's name to see its whole path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.turn import Turn
from handlers import (
    agenda_effects,
    common_effects,
    exhibitor_effects,
    handover_effects,
    hypecard_effects,
    knowledge_effects,
    media_effects,
    poll_effects,
    programme_effects,
    rsvp_effects,
    survey_effects,
    ticket_effects,
    venue_effects,
)
from state_machines import (
    agenda,
    base,
    checkin,
    exhibitors,
    handover,
    hypecard,
    knowledge,
    media,
    my_tickets,
    poll,
    programme,
    rsvp,
    survey,
    tickets,
    venue,
)

Applier = Callable[[Turn, Any], Awaitable[object | None]]

APPLIERS: dict[type[base.Effect], Applier] = {
    base.SetLanguage: common_effects.set_language,
    base.OptOut: common_effects.opt_out,
    base.OptIn: common_effects.opt_in,
    base.Charge: common_effects.charge,
    base.StartTimer: common_effects.start_timer,
    base.CancelTimers: common_effects.cancel_timers,
    survey.BeginSurveyResponse: survey_effects.begin_response,
    survey.SaveSurveyAnswer: survey_effects.save_answer,
    survey.CompleteSurvey: survey_effects.complete,
    survey.AbandonSurveyResponse: survey_effects.abandon,
    poll.CastVote: poll_effects.cast_vote,
    tickets.HoldTickets: ticket_effects.hold,
    tickets.ReleaseHold: ticket_effects.release,
    tickets.RequestPayment: ticket_effects.request_payment,
    tickets.IssueTickets: ticket_effects.issue,
    tickets.QueryPayment: ticket_effects.query_payment,
    checkin.CheckInTicket: ticket_effects.check_in,
    my_tickets.FindMyTickets: ticket_effects.find_my_tickets,
    knowledge.ClassifyIntent: knowledge_effects.classify_intent,
    knowledge.AnswerQuestion: knowledge_effects.answer_question,
    knowledge.ChargeAnswer: knowledge_effects.charge_answer,
    media.TranscribeVoiceNote: media_effects.transcribe_voice_note,
    hypecard.RequestCard: hypecard_effects.request,
    hypecard.RequeueCard: hypecard_effects.requeue,
    hypecard.GiveUpCard: hypecard_effects.give_up,
    hypecard.MarkCardSent: hypecard_effects.mark_sent,
    hypecard.CountReferral: hypecard_effects.count_referral,
    agenda.LoadAgenda: agenda_effects.load,
    agenda.RemindSession: agenda_effects.remind,
    agenda.CancelReminder: agenda_effects.cancel,
    agenda.ReminderSent: agenda_effects.sent,
    exhibitors.LoadExhibitor: exhibitor_effects.load,
    exhibitors.SaveLead: exhibitor_effects.save_lead,
    exhibitors.MarkFollowedUp: exhibitor_effects.mark_followed_up,
    rsvp.Register: rsvp_effects.register,
    rsvp.CancelRegistration: rsvp_effects.cancel,
    venue.FindPlace: venue_effects.find,
    programme.SetSubscription: programme_effects.set_subscription,
    handover.RequestHandover: handover_effects.request,
}


async def apply(turn: Turn, effect: base.Effect) -> object | None:
    try:
        applier = APPLIERS[type(effect)]
    except KeyError:
        raise LookupError(f"no applier for effect {type(effect).__name__}") from None
    return await applier(turn, effect)
