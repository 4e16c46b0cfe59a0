# The thin layer: lesson code on top of the base image. Changing a lesson rebuilds only this.
FROM socketlab/base:bookworm
COPY services/ /lab/
ENV PYTHONPATH=/lab
WORKDIR /lab
USER lab
CMD ["sleep", "infinity"]
