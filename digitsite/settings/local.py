"""Development settings, the default of manage.py, `make run` (scripts/stack.py), the ASGI app and the Celery app.

The shared settings as they are, DEBUG included (off unless DJANGO_DEBUG=1). The secret key is required, as in
production, unless DJANGO_DEBUG=1: then this checkout's own random key (.secret_key, made once, 0600) stands in.
manage.py, `make run` and the Celery command line set that key themselves when none is configured.
"""

from digitsite.secret import required_secret_key
from digitsite.settings.base import *  # noqa: F403
from digitsite.settings.base import DEBUG

SECRET_KEY = required_secret_key(checkout_key_allowed=DEBUG)
