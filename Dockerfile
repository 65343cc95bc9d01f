# Image of the project's processes for compose.yaml (api, relay, consumers).
FROM python:3.11-slim
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY domain domain
COPY projections projections
COPY consumers consumers
COPY services services
RUN uv sync --frozen --no-dev --no-editable && ln -s /app/.venv/bin/crm /usr/local/bin/crm
ENV CRM_LOG_FORMAT=json
