#!/usr/bin/env python
"""Django's command-line utility."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "digitsite.settings.local")
    if os.environ["DJANGO_SETTINGS_MODULE"] != "digitsite.settings.production":  # production: its own key or none
        from digitsite.secret import use_checkout_key

        use_checkout_key()  # unless DJANGO_SECRET_KEY is set: this checkout's own, in .secret_key
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
