"""``manage.py dev_bootstrap``: for a local run only. Creates, on first run, an admin
login and an API token with full queue rights, keeps them in the git-ignored
``.flashq-dev/credentials.json`` (mode 0600) and prints where everything is."""

from __future__ import annotations

import json
import os
import secrets
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from compliance.audit import Actor
from compliance.audit.actors import acting_as
from security.models import ApiToken
from security.services import parse_rule, token_create, token_delete

TOKEN_NAME = "dev-full-access"  # noqa: S105 (a name, not a secret)


class Command(BaseCommand):
    help = "Local development only: create (once) an admin login and a full-rights API token."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> str:
        dev_dir = getattr(settings, "DEV_DIR", None)
        if dev_dir is None:
            raise CommandError("dev_bootstrap runs only with flashq_project.settings.local")
        path = dev_dir / "credentials.json"
        credentials = json.loads(path.read_text()) if path.exists() else {}
        actor = Actor.command("dev_bootstrap")
        user_model = get_user_model()
        if not user_model.objects.filter(username=credentials.get("username", "admin")).exists():
            credentials = {"username": "admin", "password": secrets.token_urlsafe(16)}
            with acting_as(actor):  # a new superuser is a staff.flagChange event
                user_model.objects.create_superuser(
                    username="admin", email="", password=credentials["password"]
                )
            credentials.pop("token", None)
        usable = ApiToken.objects.filter(name=TOKEN_NAME, revoked_at__isnull=True).exists()
        if "token" not in credentials or not usable:
            # The plaintext is lost (or the token was revoked): replace the token.
            if ApiToken.objects.filter(name=TOKEN_NAME).exists():
                token_delete(name=TOKEN_NAME, actor=actor)
            _, credentials["token"] = token_create(
                name=TOKEN_NAME, rules=[parse_rule("*=*,admin", allow=True)], actor=actor
            )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(credentials, fh)
        url = options["url"]
        return "\n".join(
            [
                "",
                "flashQ is starting (local settings, SQLite).",
                f"  API:        {url}/api/v1/",
                f"  API docs:   {url}/api/docs/",
                f"  Admin:      {url}/admin/  (user {credentials['username']}, "
                f"password {credentials['password']})",
                f"  API token:  {credentials['token']}",
                f"  Try:        curl -H 'Authorization: Bearer {credentials['token']}' "
                f"{url}/api/v1/queues",
                f"  (kept in {path}, git-ignored)",
                "  Elsewhere:  FLASHQ_ADDRESS=host:port python3 dev.py run; Ctrl-C stops it all.",
                "",
            ]
        )
