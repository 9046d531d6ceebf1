FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY . .
# The base install, exactly what scripts/run installs: pyproject's dependencies, no dev extras.
RUN pip install --no-cache-dir -e .
EXPOSE 8000 8001
