"""Settings by environment: base (shared), local (the default: manage.py, `make run`), test (pytest), production
(the image, docker compose, Kubernetes). Pick one with DJANGO_SETTINGS_MODULE=digitsite.settings.<name>."""
