# Cascade: one image for every process (api, worker, beat, flower, migrate).
# Build stage: uv installs the locked dependencies and the project into /opt/venv.
FROM python:3.11-slim AS build
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir "uv>=0.5,<1"
WORKDIR /src
# Dependencies first: this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project --python /usr/local/bin/python3
COPY config ./config
COPY providers ./providers
COPY dispatcher ./dispatcher
RUN uv sync --locked --no-dev --no-editable --python /usr/local/bin/python3

# Run stage: the virtualenv only (no uv, no sources, no compiler), as an unprivileged user.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin cascade \
    && mkdir -p /app/data && chown cascade:cascade /app/data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CASCADE_DATA_DIR=/app/data \
    CASCADE_API_HOST=0.0.0.0
WORKDIR /app
USER cascade
EXPOSE 8000 5555
ENTRYPOINT ["dispatcher"]
CMD ["api"]
