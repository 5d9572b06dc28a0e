"""Production settings: the image (Dockerfile), docker compose and Kubernetes (deploy/k8s) run with these.

The shared settings, with DEBUG off whatever DJANGO_DEBUG says and no start without DJANGO_SECRET_KEY
(never this checkout's key). HTTPS, hosts and proxies come from the environment as everywhere
(DJANGO_HTTPS=1 behind a TLS proxy: `manage.py check --deploy` is then clean).
"""

from digitsite.secret import required_secret_key
from digitsite.settings.base import *  # noqa: F403

DEBUG = False
SECRET_KEY = required_secret_key(checkout_key_allowed=False)
