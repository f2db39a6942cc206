# A local stand-in for quay.io/minio/mc:<release>, for the Kubernetes test environment's real node
# (tests/testenv/images.py builds it; nothing can be pulled there). mc is AGPL-3.0: built and run as
# a test fixture only, never shipped with or linked into Sentinel.
# The build context holds rootfs.tar (the Debian 12 root filesystem that images.py makes with
# mmdebstrap: it has /bin/sh, which the platform's bucket Job runs) and mc, the static client that
# tests/testenv/build.py builds from the release's Go module (CGO off).
FROM scratch
ADD rootfs.tar /

COPY --chmod=755 mc /usr/bin/mc
# mc writes its aliases to $MC_CONFIG_DIR (default $HOME/.mc): /tmp is writable for any uid (the
# pods run as 1000 with no entry in /etc/passwd, whose HOME would be /).
ENV HOME=/tmp \
    MC_CONFIG_DIR=/tmp/.mc
USER 1000:1000
ENTRYPOINT ["mc"]
