"""Admin logins are throttled (django-axes): an address that fails 5 times is locked out, even with
the right password, while other addresses can still log in."""

from __future__ import annotations

import pytest


@pytest.mark.django_db
def test_repeated_failed_admin_logins_lock_the_address_out(client, django_user_model, settings) -> None:
    django_user_model.objects.create_superuser("admin", "a@example.org", "the-right-password-123")
    attacker = {"REMOTE_ADDR": "203.0.113.5"}
    statuses = [
        client.post("/admin/login/", {"username": "admin", "password": "wrong"}, **attacker).status_code
        for _ in range(settings.AXES_FAILURE_LIMIT)
    ]
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]  # the form again, then locked
    locked = client.post("/admin/login/", {"username": "admin", "password": "the-right-password-123"}, **attacker)
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session

    other = client.post(
        "/admin/login/?next=/admin/", {"username": "admin", "password": "the-right-password-123"}, REMOTE_ADDR="198.51.100.9"
    )
    assert other.status_code == 302 and client.session["_auth_user_id"]
