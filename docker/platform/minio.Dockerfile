# A local stand-in for quay.io/minio/minio:<release>, for the Kubernetes test environment's real node
# (tests/testenv/images.py builds it; nothing can be pulled there). MinIO is AGPL-3.0: built and run
# as a test fixture only, never shipped with or linked into Sentinel.
# The build context holds rootfs.tar (the Debian 12 root filesystem that images.py makes with
# mmdebstrap) and minio, the static server that tests/testenv/build.py builds from the release's Go
# module (CGO off). Like upstream's image, the entrypoint is minio, so that a pod's
# `args: [server, /data, ...]` run the server; unlike it, the image runs as uid 1000 by default.
FROM scratch
ADD rootfs.tar /

COPY --chmod=755 minio /usr/bin/minio
# MinIO keeps its certificates under $HOME/.minio: /tmp is writable for any uid (the pods run as
# 1000 with no entry in /etc/passwd, whose HOME would be /).
RUN mkdir /data && chown 1000:1000 /data
ENV HOME=/tmp \
    MC_CONFIG_DIR=/tmp/.mc
USER 1000:1000
EXPOSE 9000 9001
VOLUME ["/data"]
ENTRYPOINT ["minio"]
CMD ["server", "/data"]
