#!/usr/bin/env bash
# Builds the CPU test images from Debian's packages and PyPI only (no image registry), as root,
# from anywhere; each step reuses what an earlier run built (run it again: seconds).
#
#   tuner-debian:bookworm        Debian bookworm minbase + python3, python3-venv, imported
#                                (mmdebstrap if installed, else debootstrap; `docker import`)
#   tuner-base:bookworm-py311    + user ray (uid 1000) owning a Python 3.11 venv   (base.Dockerfile)
#   tuner-postgres:15-bookworm   + Debian's postgresql-15, official image's env   (postgres.Dockerfile)
#   tuner:ray<ray>-cpu           deploy/Dockerfile on that base, CPU torch, the same Ray
#
# Needs: a Docker daemon, debootstrap or mmdebstrap (first run only), python3, flock. The builds
# use the host's network (--network host) for PyPI and Debian. pip inside the build gets this
# host's CA bundle and, when this host's pip finds torch in a local directory (pip's find-links),
# that directory served read-only on 127.0.0.1 for the build's duration: both as BuildKit
# secrets, never in a layer. The PostgreSQL image builds while the tuner image does.
#
# Environment: DOCKER (a BuildKit-capable docker CLI; default: `docker` if it has buildx, else
# Debian's /usr/bin/docker), DEBIAN_MIRROR (default: the first URIs: of this host's apt sources),
# BOOTSTRAP (mmdebstrap or debootstrap), TORCH_VERSION (2.13.0), TUNER_IMAGE (tuner:ray<ray>-cpu),
# POSTGRES_IMAGE, CA_BUNDLE, BUILD_LOG (keep the tuner build's log there), FORCE=1 (rebuild the
# Debian image too). Prints one `timing STEP SECONDS` line per step. Concurrent runs wait for
# each other (a lock), so a second run reuses the first one's images.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

ray_version="$(sed -n 's/^ARG RAY_VERSION=//p' "$repo/deploy/Dockerfile")"
DEBIAN_IMAGE="${DEBIAN_IMAGE:-tuner-debian:bookworm}"
BASE_IMAGE="${BASE_IMAGE:-tuner-base:bookworm-py311}"
POSTGRES_IMAGE="${POSTGRES_IMAGE:-tuner-postgres:15-bookworm}"
TUNER_IMAGE="${TUNER_IMAGE:-tuner:ray${ray_version}-cpu}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

if [ -z "${DOCKER:-}" ]; then
    if docker buildx version >/dev/null 2>&1; then DOCKER=docker
    elif [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker      # Debian's docker.io: BuildKit built in
    else DOCKER=docker; fi
fi
export DOCKER_BUILDKIT=1

exec 9>"${TMPDIR:-/tmp}/tuner-build-images.lock"
flock 9

step_start=0
step() { step_start=$(date +%s.%N); echo "== $1" >&2; }
done_step() { awk -v s="$step_start" -v e="$(date +%s.%N)" -v n="$1" 'BEGIN { printf "timing %s %.1f\n", n, e - s }'; }
have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

work="$(mktemp -d)"
server_pid=""
pg_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    [ -n "$pg_pid" ] && kill "$pg_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# 1. Debian, once.
if [ "${FORCE:-0}" = 1 ] || ! have_image "$DEBIAN_IMAGE"; then
    step debian
    mirror="${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)}"
    mirror="${mirror:-http://deb.debian.org/debian}"
    packages=python3,python3-venv
    tool="${BOOTSTRAP:-$(command -v mmdebstrap >/dev/null && echo mmdebstrap || echo debootstrap)}"
    if [ "$tool" = mmdebstrap ]; then
        # apt-based: downloads in parallel, unpacks without fsync; writes the tarball directly
        mmdebstrap --variant=minbase --include="$packages" --dpkgopt=force-unsafe-io \
            --aptopt='Acquire::Languages "none"' bookworm "$work/rootfs.tar" "$mirror" \
            >"$work/bootstrap.log" 2>&1 || { tail -20 "$work/bootstrap.log" >&2; exit 1; }
        "$DOCKER" import -c 'CMD ["/bin/bash"]' "$work/rootfs.tar" "$DEBIAN_IMAGE" >/dev/null
    else
        debootstrap --variant=minbase --include="$packages" \
            bookworm "$work/rootfs" "$mirror" >"$work/bootstrap.log" 2>&1 \
            || { tail -20 "$work/bootstrap.log" >&2; exit 1; }
        rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
        tar -C "$work/rootfs" -c . | "$DOCKER" import -c 'CMD ["/bin/bash"]' - "$DEBIAN_IMAGE" >/dev/null
    fi
    rm -rf "$work/rootfs" "$work/rootfs.tar"
    done_step debian
fi

# 2. PostgreSQL, in the background (apt), while the Python images build (pip).
pg_start=$(date +%s.%N)
"$DOCKER" build -q --network host --build-arg DEBIAN_IMAGE="$DEBIAN_IMAGE" \
    -f "$here/postgres.Dockerfile" -t "$POSTGRES_IMAGE" "$here" >"$work/postgres.log" 2>&1 &
pg_pid=$!

# 3. The base image (layer cache: seconds when nothing changed).
step base
"$DOCKER" build -q --network host --build-arg DEBIAN_IMAGE="$DEBIAN_IMAGE" \
    -f "$here/base.Dockerfile" -t "$BASE_IMAGE" "$here" >/dev/null
done_step base

# 4. The tuner image: deploy/Dockerfile with the CPU torch build and the same Ray.
step tuner
pip_conf="$work/pip.conf"
printf '[global]\ncert = /run/secrets/pip-ca.crt\n' > "$pip_conf"
torch_pin="$TORCH_VERSION"
index_args=()
wheels=""
for dir in $(pip config get global.find-links 2>/dev/null || true) ${PIP_FIND_LINKS:-}; do
    if compgen -G "$dir/torch-${TORCH_VERSION}+cpu-*.whl" >/dev/null; then wheels="$dir"; break; fi
done
if [ -n "$wheels" ]; then
    # This host's pip takes torch from a local directory: serve it on loopback for the build.
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    python3 -m http.server --bind 127.0.0.1 --directory "$wheels" "$port" >/dev/null 2>&1 &
    server_pid=$!
    for _ in $(seq 50); do
        python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/', timeout=1)" 2>/dev/null && break
        sleep 0.1
    done
    printf 'find-links = http://127.0.0.1:%s/\n' "$port" >> "$pip_conf"
    torch_pin="${TORCH_VERSION}+cpu"
else
    index_args=(--build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu)
fi
log="${BUILD_LOG:-$work/build.log}"
"$DOCKER" build --network host --progress plain \
    --secret id=pip.conf,src="$pip_conf" --secret id=pip-ca,src="$CA_BUNDLE" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg TORCH_VERSION="$torch_pin" "${index_args[@]}" \
    -f "$repo/deploy/Dockerfile" -t "$TUNER_IMAGE" "$repo" >"$log" 2>&1 \
    || { tail -40 "$log" >&2; exit 1; }
grep -E '^#[0-9]+ [0-9.]+ ray [0-9]' "$log" | tail -1 | sed 's/^#[0-9]* [0-9.]* /built: /' >&2 || true
done_step tuner

step postgres
if ! wait "$pg_pid"; then pg_pid=""; cat "$work/postgres.log" >&2; exit 1; fi
pg_pid=""
awk -v s="$pg_start" -v e="$(date +%s.%N)" 'BEGIN { printf "timing postgres-total %.1f\n", e - s }'
done_step postgres-wait
printf 'image %s %s\n' "$TUNER_IMAGE" "$("$DOCKER" image inspect -f '{{.Size}}' "$TUNER_IMAGE")"
printf 'image %s %s\n' "$POSTGRES_IMAGE" "$("$DOCKER" image inspect -f '{{.Size}}' "$POSTGRES_IMAGE")"
