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
