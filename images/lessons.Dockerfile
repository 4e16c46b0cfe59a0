# The thin layer: lesson code on top of the base image. Changing a lesson rebuilds only this
# one COPY (user, workdir and environment are set once, in the base image).
ARG BASE=socketlab/base:bookworm
FROM ${BASE}
COPY services/ /lab/
