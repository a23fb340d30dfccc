# One image for the API, the worker and beat; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LILAW_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY api api
COPY worker worker
COPY cli cli
COPY migrations migrations
RUN pip install . \
    && useradd --create-home --uid 1000 lilaw \
    && mkdir -p /data \
    && chown lilaw:lilaw /data

USER lilaw
EXPOSE 8000
CMD ["uvicorn", "api.app:app", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
