"""The people and tokens tests act as, defined once. Staff: a superuser ("root"), an
operator (the Operators group, granted one queue through the ``queue_grant`` service, as
``manage.py grant_queue`` does), an auditor (the Auditors group) and a staff user with
no group and no rights. Tokens: a producer, a worker, an admin, a stranger, and one with
every verb on every queue.

The ``make_*`` functions only create the user (so a test may clear the audit trail
before logging in); ``logged_in`` gives the Django test client for one, which keeps the
user as ``.user``. The fixtures in conftest.py (superuser, operator, auditor, staff)
return such a client; browser tests log in with ``tests.browsers.log_in``, every
persona having the password ``PASSWORD``. A test that needs a special user (an extra
permission, another name) builds it with these and adds what it needs."""

from __future__ import annotations

from dataclasses import dataclass
from io import StringIO
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from queues.models import Queue
from queues.services import queue_grant

from .support import SETUP, make_token

PASSWORD = "a-long-test-persona-password"
#: The one queue the operator persona is granted unless told otherwise.
OPERATOR_QUEUE = "jobs:q"


class StaffClient(Client):
    """The Django test client logged in as ``user`` (kept as ``.user``)."""

    def __init__(self, user: Any, **defaults: Any) -> None:
        super().__init__(**defaults)
        self.user = user
        self.force_login(user)


@dataclass
class Personas:
    producer: str
    worker: str
    admin: str
    stranger: str


def token_personas() -> Personas:
    return Personas(
        producer=make_token("producer", "jobs:*=push,getJob,cancel"),
        worker=make_token("worker", "jobs:*=pull,ack,fail,progress"),
        admin=make_token("admin", "*=*,admin"),
        stranger=make_token("stranger", "other:*=*"),
    )


def make_full_token() -> str:
    """A token with every verb on every queue (admin included)."""
    return make_token("full", "*=*,admin")


def setup_roles() -> None:
    """The Operators and Auditors groups, made by ``manage.py setup_roles`` as in
    production; run once per test (again would record another ``roles.setup``)."""
    if Group.objects.filter(name__in=["Operators", "Auditors"]).count() < 2:
        call_command("setup_roles", stdout=StringIO())


def make_staff_user(name: str, *groups: str, password: str = PASSWORD) -> Any:
    """A new staff user in ``groups`` (setup_roles' groups are made if missing) with no
    other rights: what every staff persona is built from."""
    user = get_user_model().objects.create_user(name, password=password, is_staff=True)
    if groups:
        setup_roles()
    for group in groups:
        user.groups.add(Group.objects.get(name=group))
    return user


def make_superuser(name: str = "root", *, password: str = PASSWORD) -> Any:
    return get_user_model().objects.create_superuser(name, "", password)


def make_operator(name: str = "olga", *queues: str, password: str = PASSWORD) -> Any:
    """An Operators member granted the operator role on ``queues`` (default: the one
    queue OPERATOR_QUEUE), made if missing, one ``queue_grant`` per queue."""
    user = make_staff_user(name, "Operators", password=password)
    for queue in queues or (OPERATOR_QUEUE,):
        Queue.objects.get_or_create(name=queue)
        queue_grant(queue_name=queue, role="operator", grantee=user, actor=SETUP)
    return user


def make_auditor(name: str = "audrey", *, password: str = PASSWORD) -> Any:
    return make_staff_user(name, "Auditors", password=password)


def make_staff(name: str = "nemo", *, password: str = PASSWORD) -> Any:
    """Staff with no group and no rights."""
    return make_staff_user(name, password=password)


def logged_in(user: Any, **defaults: Any) -> StaffClient:
    """The Django test client logged in as ``user``; ``defaults`` go to every request
    (``REMOTE_ADDR=...``)."""
    return StaffClient(user, **defaults)


def superuser_client(**defaults: Any) -> StaffClient:
    """The Django test client, logged in as a new superuser ("root")."""
    return logged_in(make_superuser(), **defaults)
