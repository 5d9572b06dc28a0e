"""Production settings: no start without a secret key, and `check --deploy` clean with HTTPS on."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TRUSTED_PROXIES"))}
    # not manage.py: it would read this checkout's .secret_key; settings alone must refuse
    code = "import sys; from django.core.management import execute_from_command_line as e; e(sys.argv)"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**base, "DJANGO_SETTINGS_MODULE": "digitsite.settings", **env}, timeout=120)


def test_settings_refuse_to_start_with_debug_off_and_no_secret_key() -> None:
    result = manage("check")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr
    assert manage("check", DJANGO_DEBUG="1").returncode == 0  # development may go without one


def test_check_deploy_is_clean_with_production_settings() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING",
                    DJANGO_SECRET_KEY=secrets.token_urlsafe(50), DJANGO_HTTPS="1",
                    DJANGO_ALLOWED_HOSTS="digits.example.org", TRUSTED_PROXIES="10.0.0.0/8")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_a_site_served_without_https() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):  # HSTS, redirect, cookies
        assert check in result.stdout + result.stderr
