# Production image: web (uvicorn, scripts/web.sh), worker and beat all run from it (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt
COPY . .
RUN python manage.py collectstatic --no-input -v 0
EXPOSE 8000
CMD ["scripts/web.sh", "--host", "0.0.0.0", "--port", "8000"]
