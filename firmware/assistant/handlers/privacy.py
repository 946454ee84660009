"""Privacy by voice: delete what was said, stop review, ask about review; never start it.

The device decides nothing here: each command goes to the consent service as a
`PrivacyRequest`, and the answer is said when its `PrivacyReply` comes back. A voice can
only narrow what is kept or reviewed. "Let people review my recordings" is refused on the
device and sends no message at all: anyone in the room can talk to a speaker, so turning
review on takes the app.
"""

from __future__ import annotations

from contract.messages import PrivacyAction, PrivacyReply
from firmware.assistant.handlers.base import AskConsent, Context, IntentHandler, Outcome, Say
from firmware.assistant.intents import Intent
from firmware.assistant.replies import say
from firmware.assistant.settings import Language

_COMMANDS = {
    "EarmarkDeleteLast": PrivacyAction.DELETE_LAST,
    "EarmarkDeleteToday": PrivacyAction.DELETE_TODAY,
    "EarmarkStopReview": PrivacyAction.STOP_REVIEW,
    "EarmarkReviewStatus": PrivacyAction.REVIEW_STATUS,
}


class PrivacyCommand:
    """A command the consent service carries out (and answers): one instance per action."""

    def __init__(self, intent_name: str, action: PrivacyAction) -> None:
        self.intent_names = frozenset({intent_name})
        self._action = action

    def handle(self, intent: Intent, context: Context) -> Outcome:
        """Ask the consent service; the assistant waits for its reply."""
        return AskConsent(self._action)


class RefuseReviewByVoice:
    """ "Let people review my recordings." """

    intent_names = frozenset({"EarmarkAllowReview"})

    def handle(self, intent: Intent, context: Context) -> Outcome:
        """Refuse, and point to the app: nothing is sent."""
        return Say(say("review_voice_refused", context.language))


def consent_reply(message: PrivacyReply, language: Language) -> str:
    """What to say once the consent service has answered a command."""
    if not message.ok:
        return say("privacy_failed", language)
    if message.action is PrivacyAction.DELETE_LAST:
        return say("deleted_last", language)
    if message.action is PrivacyAction.DELETE_TODAY:
        return say("deleted_today", language, count=message.deleted)
    if message.action is PrivacyAction.STOP_REVIEW:
        return say("review_stopped", language)
    return say("review_on" if message.review_allowed else "review_off", language)


HANDLERS: tuple[IntentHandler, ...] = (
    *(PrivacyCommand(name, action) for name, action in _COMMANDS.items()),
    RefuseReviewByVoice(),
)
