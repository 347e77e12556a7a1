"""The base of the views of a queue's named things (schedules, webhooks): the name in
the route, and the optional reason a change may carry into its audit event."""

from __future__ import annotations

from kernel.limits import QUEUE_NAME_RE, QUEUE_NAME_RULE
from kernel.problems import InvalidInput
from security.cards import card_problem, find_cards_in_text

from . import serializers
from .base import FlashqApiView


class NamedItemView(FlashqApiView):
    #: What the route's ``name`` names, for the error message.
    item = "item"

    def item_name(self) -> str:
        name = str(self.kwargs["name"])
        if not QUEUE_NAME_RE.fullmatch(name):
            raise InvalidInput(f"Invalid {self.item} name: {QUEUE_NAME_RULE}.")
        refused = card_problem(find_cards_in_text(name, "/name"))
        if refused is not None:
            raise refused
        return name

    def reason(self) -> str:
        """The optional reason, kept in the audit event: no card number in it."""
        params = serializers.ReasonIn(data=self.request.data or {})
        params.is_valid(raise_exception=True)
        reason = str(params.validated_data["reason"])
        refused = card_problem(find_cards_in_text(reason, "/reason"))
        if refused is not None:
            raise refused
        return reason
