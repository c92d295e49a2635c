# One image for every Hive service; compose.yaml picks the service with its command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir .
ENV HIVE_HOME=/data
CMD ["python", "-m", "services.gateway"]
