# Telltale: one image for the service (`telltale serve`) and the exporter sidecar (`telltale exporter`).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY checks ./checks
COPY config ./config
COPY exporter ./exporter
COPY alerting ./alerting
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /nonexistent telltale
COPY --from=build /install /usr/local
# The exporter's default queries.yml is package data inside the wheel (importlib.resources); to replace it,
# mount a file and set TELLTALE_EXPORTER_QUERIES_FILE=/path/to/queries.yml.
USER 10001
ENV TELLTALE_HOST=0.0.0.0 \
    TELLTALE_PORT=8000 \
    PYTHONUNBUFFERED=1
EXPOSE 8000 9465
# `telltale check` exits 0 healthy, 1 degraded, 2 unhealthy: Docker treats any non-zero as a failed probe,
# so only the liveness endpoint is used here and dependencies are left to the readiness probe.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["telltale"]
CMD ["serve"]
