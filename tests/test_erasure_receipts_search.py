"""Erasure receipts are found by the subject they were issued for: the subject is posted,
turned into its pseudonym with the key the receipts were written with, and matched
exactly; the subject itself is not put in the address, the page, the audit trail or
the logs. Auditors (who may only view) can search."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from compliance.models import AuditEvent, ErasureRequest
from security.masking import pseudonym

from .personas import logged_in, make_auditor

pytestmark = pytest.mark.django_db

RECEIPTS = "/admin/compliance/erasurerequest/"
SUBJECT = "maria.rossi@example.com"


@pytest.fixture
def auditor() -> Client:
    for subject, reason in ((SUBJECT, "DSR-2026-001"), ("someone-else", "DSR-2026-002")):
        ErasureRequest.objects.create(
            subject_pseudonym=pseudonym(subject),
            mode=ErasureRequest.Mode.REDACT,
            operator="command:gdpr_erase",
            reason=reason,
        )
    return logged_in(make_auditor())


def _find(client: Client, subject: str) -> tuple[Any, str]:
    found = client.post(f"{RECEIPTS}by-subject/", {"subject": subject})
    assert found.status_code == 302
    return found, client.get(found["Location"]).content.decode()


def test_a_receipt_is_found_by_its_subject_and_not_by_another(
    auditor: Client, caplog: pytest.LogCaptureFixture
) -> None:
    listing = auditor.get(RECEIPTS).content.decode()
    assert 'id="subject-search"' in listing and 'method="post"' in listing
    found, page = _find(auditor, SUBJECT)
    assert "DSR-2026-001" in page and "DSR-2026-002" not in page
    assert pseudonym(SUBJECT) in found["Location"]
    for text in (found["Location"], page, str(list(AuditEvent.objects.values())), caplog.text):
        assert SUBJECT not in text
    _, other = _find(auditor, "nobody-like-this")
    assert "DSR-2026-001" not in other and "DSR-2026-002" not in other
    _, upper = _find(auditor, SUBJECT.upper())  # the pseudonym is of the exact subject
    assert "DSR-2026-001" not in upper


def test_the_subject_cannot_travel_in_a_url(auditor: Client) -> None:
    assert auditor.get(f"{RECEIPTS}by-subject/", {"subject": SUBJECT}).status_code == 403
    page = auditor.get(RECEIPTS, {"q": SUBJECT}).content.decode()
    assert "DSR-2026-001" in page and "DSR-2026-002" in page  # no search on the list itself
