"""WSGI entry point for gunicorn. Defaults to production settings, which refuse to start
without real secrets."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashq_project.settings.production")

application = get_wsgi_application()
