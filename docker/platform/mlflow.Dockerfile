# A local stand-in for ghcr.io/mlflow/mlflow:v<version>-full, for the Kubernetes test environment's
# real node (tests/testenv/images.py builds it; nothing can be pulled there). Of what "-full" adds to
# core MLflow, the platform's server (sqlite backend store, artifacts proxied to MinIO) needs boto3
# only: database drivers and the other clouds' SDKs are left out. requirements-mlflow.txt names both.
# The build context holds rootfs.tar (the Debian 12 root filesystem with Python 3.11 that images.py
# makes with mmdebstrap), requirements-mlflow.txt and images.txt (the project's lock: the versions).
FROM scratch
ADD rootfs.tar /

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN useradd --uid 1000 --user-group --create-home --home-dir /home/mlflow --shell /bin/bash mlflow \
    && mkdir /data && chown 1000:1000 /data

ENV PATH=/opt/mlflow/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1
COPY requirements-mlflow.txt images.txt /opt/
RUN python3.11 -m venv /opt/mlflow \
    && pip install --no-cache-dir --requirement /opt/requirements-mlflow.txt --constraint /opt/images.txt \
    && mlflow --version

USER 1000:1000
WORKDIR /home/mlflow
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
