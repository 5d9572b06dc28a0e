"""Settings by environment: local (the default) and production refuse to start without a secret key (local allows
this checkout's own with DJANGO_DEBUG=1), production keeps DEBUG off, and `check --deploy` is clean with HTTPS on."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


LOCAL, PRODUCTION = "digitsite.settings.local", "digitsite.settings.production"


def manage(*args: str, settings: str = PRODUCTION, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TRUSTED_PROXIES"))}
    # not manage.py: it would read this checkout's .secret_key; settings alone must refuse
    code = "import sys; from django.core.management import execute_from_command_line as e; e(sys.argv)"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**base, "DJANGO_SETTINGS_MODULE": settings, **env},
        timeout=120,
    )


def test_settings_refuse_to_start_with_debug_off_and_no_secret_key() -> None:
    for settings in (LOCAL, PRODUCTION):
        result = manage("check", settings=settings)
        assert result.returncode != 0
        assert "DJANGO_SECRET_KEY is not set" in result.stderr
    assert manage("check", settings=LOCAL, DJANGO_DEBUG="1").returncode == 0  # development may go without one


def test_production_keeps_debug_off_and_needs_a_key_even_when_debug_is_asked_for() -> None:
    result = manage("check", DJANGO_DEBUG="1")
    assert result.returncode != 0 and "DJANGO_SECRET_KEY is not set" in result.stderr
    show = ["shell", "-c", "from django.conf import settings; print(settings.DEBUG)"]
    result = manage(*show, DJANGO_DEBUG="1", DJANGO_SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_manage_py_lends_production_no_checkout_key() -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "DJANGO_SETTINGS_MODULE": PRODUCTION},
    )
    assert result.returncode != 0 and "DJANGO_SECRET_KEY is not set" in result.stderr


def test_the_image_compose_and_kubernetes_run_the_production_settings() -> None:
    assert f"DJANGO_SETTINGS_MODULE={PRODUCTION}" in (ROOT / "Dockerfile").read_text()
    assert f"DJANGO_SETTINGS_MODULE: {PRODUCTION}" in (ROOT / "docker-compose.yml").read_text()
    assert f"DJANGO_SETTINGS_MODULE: {PRODUCTION}" in (ROOT / "deploy" / "k8s" / "config.yaml").read_text()


def test_check_deploy_is_clean_with_production_settings() -> None:
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_HTTPS="1",
        DJANGO_ALLOWED_HOSTS="digits.example.org",
        TRUSTED_PROXIES="10.0.0.0/8",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_a_site_served_without_https() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):  # HSTS, redirect, cookies
        assert check in result.stdout + result.stderr


def test_debug_without_a_key_uses_the_checkouts_random_key_never_a_constant() -> None:
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "DJANGO_SETTINGS_MODULE": LOCAL, "DJANGO_DEBUG": "1"},
    )
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key == (ROOT / ".secret_key").read_text().strip()  # the checkout's own, made once
    assert len(key) >= 50 and "insecure" not in key
    assert (ROOT / ".secret_key").stat().st_mode & 0o077 == 0


def test_a_new_sqlite_database_and_its_wal_are_readable_by_their_owner_only(tmp_path: Path, django_db_blocker) -> None:
    from django.db.utils import ConnectionHandler

    name = tmp_path / "db.sqlite3"
    handler = ConnectionHandler(
        {"default": {"ENGINE": "digitsite.sqlite3", "NAME": str(name), "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"}}}
    )
    with django_db_blocker.unblock():
        try:
            with handler["default"].cursor() as cursor:
                cursor.execute("CREATE TABLE t (x integer)")
                cursor.execute("INSERT INTO t VALUES (1)")
                files = sorted(tmp_path.iterdir())
                assert [f.name for f in files] == ["db.sqlite3", "db.sqlite3-shm", "db.sqlite3-wal"]
                assert {oct(f.stat().st_mode & 0o777) for f in files} == {oct(0o600)}
        finally:
            handler.close_all()
