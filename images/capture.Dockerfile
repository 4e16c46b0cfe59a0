# The packet-capture sidecar: the base image plus Debian's tcpdump. `lab.py trace` starts it in the
# server container's network namespace (network_mode "container:<id>"), as root with every
# capability dropped except two: NET_RAW (the AF_PACKET socket tcpdump reads from) and SETGID
# (tcpdump always calls initgroups() when it starts as root, even for `-Z root`, and stops with
# "Couldn't change to 'root'" without it). `-Z root` keeps the savefile root's, which needs no
# CHOWN; dropping to user tcpdump instead would need SETUID and CHOWN as well. No NET_ADMIN:
# tcpdump runs with -p (no promiscuous mode); the server's own traffic is all it has to see.
#
# A separate image, not the base: the lesson containers never get a capture tool, and a change
# here rebuilds nothing the lessons use. Built once (from Debian's mirror, like the base) and
# shipped by `lab.py bundle`, so capture works offline afterwards.
ARG BASE=socketlab/base:bookworm
FROM ${BASE}
USER root
RUN command -v tcpdump >/dev/null || (apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tcpdump \
      && rm -rf /var/lib/apt/lists/*) \
 && mkdir -p /capture
WORKDIR /capture
CMD ["tcpdump", "--version"]
