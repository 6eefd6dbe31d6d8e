# ffp service image: CPU PyTorch on python:3.11-slim, running as a non-root user.
#   docker build -t ffp . && docker run -p 8000:8000 ffp      (or: docker compose -f docker/compose.yaml up)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# The CPU wheel keeps the image small; for a CUDA build pass --build-arg TORCH_INDEX_URL=https://pypi.org/simple
# (and run with --gpus all).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /app
# Dependencies first (cached while only the code changes), then the code, shipped weights and demo clip.
COPY pyproject.toml README.md ./
COPY model ./model
COPY service ./service
COPY weights ./weights
COPY docker ./docker
# Editable: the default weights are found next to the code (weights/), as in a checkout.
RUN pip install -e ".[service]"

RUN useradd --create-home --uid 10001 ffp && mkdir -p /app/data && chown ffp:ffp /app/data
USER ffp

# FFP_API_KEY=... requires an API key on every route but /healthz.
ENV FFP_DATA_DIR=/app/data
EXPOSE 8000
VOLUME ["/app/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"
CMD ["python", "-m", "service", "--config", "/app/docker/demo.yaml", "--host", "0.0.0.0"]
