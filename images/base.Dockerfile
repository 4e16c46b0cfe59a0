# The one base image every lesson runs on: Debian bookworm + Python 3.11 + a non-root user.
#
# ROOTFS is either the official debian:bookworm-slim (pulled where a registry answers) or a
# rootfs that lab.py bootstrapped with mmdebstrap and `docker import` (no registry needed).
# Both are Debian bookworm, so both worlds run the same Python.
ARG ROOTFS=socketlab/rootfs:bookworm
FROM ${ROOTFS}

# The mmdebstrap rootfs already has these; debian:bookworm-slim needs them from Debian's mirror.
RUN if ! command -v python3 >/dev/null || ! command -v ss >/dev/null || ! command -v sshd >/dev/null; then \
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 iproute2 procps openssh-server iputils-ping && rm -rf /var/lib/apt/lists/*; \
    fi \
 && rm -f /etc/ssh/ssh_host_* \
 && (id lab >/dev/null 2>&1 || useradd --create-home --uid 1000 --shell /bin/bash lab)

COPY lab-health /usr/local/bin/lab-health
# Everything the lesson layer would otherwise repeat: each instruction here is a layer built once.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8 PYTHONPATH=/lab
WORKDIR /lab
USER lab
CMD ["sleep", "infinity"]
