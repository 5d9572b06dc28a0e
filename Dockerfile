# One image for the web process (daphne, edge/serve.py) and both Celery workers; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Production settings (digitsite/settings/production.py): DEBUG off, no start without DJANGO_SECRET_KEY.
ENV DJANGO_SETTINGS_MODULE=digitsite.settings.production
# Point this at a CPU-only PyTorch wheel index to keep the image free of CUDA libraries.
ARG PIP_EXTRA_INDEX_URL=""
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DJANGO_SECRET_KEY=build python manage.py collectstatic --noinput
RUN useradd --create-home app && chown -R app /app
USER app
EXPOSE 8000
# daphne with a graceful drain on SIGTERM; proxy headers are believed only from TRUSTED_PROXIES
CMD ["python", "-m", "edge.serve", "-b", "0.0.0.0", "-p", "8000", "digitsite.asgi:application"]
