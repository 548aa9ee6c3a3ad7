# A CPU base for deploy/Dockerfile, made from Debian's packages only (no image registry needed):
# the Debian image that build-images.sh makes with debootstrap, plus what deploy/Dockerfile
# expects of its BASE_IMAGE (as Ray's images have it): a user `ray` (uid 1000, gid 100 `users`)
# who owns the Python 3.11 environment on PATH, so pip and every process run without root.
ARG DEBIAN_IMAGE=tuner-debian:bookworm
FROM ${DEBIAN_IMAGE}
ENV LANG=C.UTF-8 \
    PATH=/home/ray/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN useradd --create-home --uid 1000 --gid 100 --shell /bin/bash ray \
 && python3 -m venv /home/ray/venv \
 && chown -R ray:users /home/ray/venv
USER ray
WORKDIR /home/ray
CMD ["python", "--version"]
