# ffp service image on python:3.11-slim, running as a non-root user.
#   docker build -t ffp . && docker run -p 8000:8000 -v ffp-data:/app/data ffp
#   docker compose -f docker/compose.yaml up                  (CPU)
#   docker compose -f docker/compose.yaml --profile gpu up ffp-gpu   (CUDA, NVIDIA container toolkit)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# TORCH_BUILD selects the torch build: cpu (the default, a small image) or cuda (PyPI's Linux wheel, which
# bundles the CUDA runtime; the host needs only the NVIDIA driver and container toolkit). TORCH_INDEX_URL, when
# set, overrides the index either way (e.g. https://download.pytorch.org/whl/cu128 for one CUDA version).
ARG TORCH_VERSION=2.13.0
ARG TORCH_BUILD=cpu
ARG TORCH_INDEX_URL=""
SHELL ["/bin/sh", "-eu", "-c"]
RUN case "${TORCH_BUILD}" in \
        cpu) index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" ;; \
        cuda) index="${TORCH_INDEX_URL:-https://pypi.org/simple}" ;; \
        *) echo "TORCH_BUILD must be cpu or cuda, not ${TORCH_BUILD}" >&2; exit 2 ;; \
    esac; \
    pip install "torch==${TORCH_VERSION}" --index-url "${index}"

WORKDIR /app
# Dependencies first (cached while only the code changes), then the code, shipped weights and demo clip.
COPY pyproject.toml README.md ./
COPY model ./model
COPY service ./service
COPY weights ./weights
COPY docker ./docker
# Editable: the default weights are found next to the code (weights/), as in a checkout.
RUN pip install -e ".[service]"

# Everything the service writes lives in data_dir, the volume: the events database and images, scored clips'
# images, and each camera's footage and models (data_dir/cameras/, data_dir/models/). The folders are made here,
# owned by the service's user, so that a new named volume starts with that owner.
RUN useradd --create-home --uid 10001 --user-group ffp \
    && mkdir -p /app/data/models /app/data/cameras \
    && chown -R 10001:10001 /app/data
# Numeric, so that the host (and Kubernetes' runAsNonRoot) can tell it is not root without the image's passwd.
USER 10001:10001

# FFP_API_KEY=... requires an API key on every route but /healthz.
ENV FFP_DATA_DIR=/app/data
EXPOSE 8000
VOLUME ["/app/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
CMD ["python", "-m", "service", "--config", "/app/docker/demo.yaml", "--host", "0.0.0.0"]
