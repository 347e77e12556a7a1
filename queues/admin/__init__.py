"""Queues and jobs in the admin, one more caller of the services: every change goes
through queues.services and is audited with the staff user as actor, and a user
without a global right sees and acts on only the queues granted to them
(queues.staffaccess).

- ``queues``: queues created and their settings changed; pausing, resuming and legal
  holds are actions that ask for a reason, never fields;
- ``jobs``: jobs are never edited; retry, cancel, delete, promote and cancel flow are
  actions that ask for a reason, per job the user may operate; searches and filters
  are audited;
- ``joblist``: the list for a big table (bounded count, no payloads, the tag filter,
  the filter on a job's relations); ``jobcolumns`` its columns per state (the failed
  list's errors, the active list's lease holders), ``daterange`` its date-range
  filters, ``selection`` what "select all" acts on;
- ``workers``: the Workers page, the token families that pulled lately, per queue;
- ``jobdetail``: a job's page, payloads and free texts masked for every role and
  revealed once on request with a reason (queues.staffreads), its relations (parent,
  children, dependencies, dependents) and its audit events;
- ``schedules``: schedules per queue, read-only, with pause, resume, trigger and delete
  actions that ask for a reason, per schedule the user may operate;
- ``webhooks``: webhooks per queue, added and changed through the service with a reason,
  the signing secret shown once after an add or a rotation; rotate and delete actions;
- ``confirm``: the confirmation page with a reason that every action shows first.

What a staff user sees is read through queues.selectors and queues.staffreads.
Django's autodiscovery imports this package; importing the modules below registers
their ModelAdmins."""

from __future__ import annotations

from . import jobs, queues, schedules, webhooks

__all__ = ["jobs", "queues", "schedules", "webhooks"]
