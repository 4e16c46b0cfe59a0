# A stand-in for a classroom lab machine: the base image plus an SSH server. No Docker inside —
# lab machines need only Python >= 3.11 and SSH. The test (or teacher) puts the authorized key in
# /home/lab/.ssh/authorized_keys before the container starts; host keys are made at start, so
# every "machine" has its own.
ARG BASE=socketlab/base:bookworm
FROM ${BASE}
USER root
RUN mkdir -p /run/sshd /home/lab/.ssh && chmod 700 /home/lab/.ssh && chown lab:lab /home/lab/.ssh \
 && usermod -p '*' lab
CMD ["/bin/sh", "-c", "ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -D -e"]
