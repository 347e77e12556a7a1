"""Compliance's API routes, mounted under /api/v1/ beside the queues' routes."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("compliance/erasures", api.ErasureApi.as_view(), name="erasures"),
]
