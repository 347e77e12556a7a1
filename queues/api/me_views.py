"""``GET /api/v1/me``: the calling token as the server sees it."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from security.services import token_describe

from . import serializers
from .base import FlashqApiView
from .docs import operation_schema, problems
from .operations import Operation
from .representations import iso


@extend_schema_view(
    get=operation_schema(
        Operation.ME,
        responses={200: serializers.MeOut, **problems()},
        description="The calling token: name, expiry, address allow-list and rules (never "
        "its secret or hash). Any valid token may ask.",
    )
)
class MeApi(FlashqApiView):
    operations = {"get": Operation.ME}

    def get(self, request: Request) -> Response:
        profile = token_describe(
            token_id=self.principal.token_id, name=self.principal.name, actor=self.actor()
        )
        return Response(
            {
                "name": profile.name,
                "bootstrap": profile.bootstrap,
                "family": profile.family,
                "created_at": iso(profile.created_at),
                "expires_at": iso(profile.expires_at),
                "allowed_cidrs": profile.allowed_cidrs,
                "permissions": [
                    {
                        "effect": "allow" if rule.allow else "deny",
                        "pattern": rule.pattern,
                        "verbs": list(rule.verbs),
                    }
                    for rule in profile.rules
                ],
            }
        )
