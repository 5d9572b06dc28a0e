#!/usr/bin/env python
"""Django's command-line utility."""
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings")
    key_file = Path(__file__).resolve().parent / ".secret_key"  # this checkout's key, made by `make`
    if not os.environ.get("DJANGO_SECRET_KEY") and key_file.is_file():
        os.environ["DJANGO_SECRET_KEY"] = key_file.read_text().strip()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
