"""This checkout's own secret key, for `make run`, manage.py and the stack when none is configured.

The settings refuse to start without DJANGO_SECRET_KEY (a known fallback key would let anyone forge
admin sessions). A developer's checkout gets a random key of its own instead, made once and kept in
`.secret_key` (git-ignored, readable by its owner only). Production sets DJANGO_SECRET_KEY.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_FILE = Path(__file__).resolve().parent.parent / ".secret_key"


def use_checkout_key(key_file: Path = KEY_FILE) -> None:
    """Set DJANGO_SECRET_KEY from `key_file` (made if missing) unless it is set already."""
    if os.environ.get("DJANGO_SECRET_KEY"):
        return
    if not key_file.is_file() or not key_file.read_text().strip():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
    os.environ["DJANGO_SECRET_KEY"] = key_file.read_text().strip()


def required_secret_key(checkout_key_allowed: bool) -> str:
    """DJANGO_SECRET_KEY, or with `checkout_key_allowed` (development: DJANGO_DEBUG=1) this checkout's own key.

    A known key lets anyone forge sessions (the admin) and CSRF tokens: there is never a fallback to a constant.
    """
    from django.core.exceptions import ImproperlyConfigured

    if not os.environ.get("DJANGO_SECRET_KEY"):
        if not checkout_key_allowed:
            raise ImproperlyConfigured(
                "DJANGO_SECRET_KEY is not set. Set it to a long random string (or DJANGO_DEBUG=1 for development "
                "with the local settings); manage.py and `make run` make one for this checkout in .secret_key."
            )
        use_checkout_key()
    return os.environ["DJANGO_SECRET_KEY"]
