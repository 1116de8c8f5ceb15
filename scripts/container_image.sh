#!/usr/bin/env bash
# Builds the container images without an image registry (as root; needs debootstrap and a
# running dockerd at $DOCKER_HOST):
#   sfc-base:<hash>      Debian (the host's release and mirror) by debootstrap, then `docker import`
#   sfc-airflow:latest   docker/Dockerfile: Airflow and this project from a wheelhouse built on the host
#   sfc-postgres:latest  docker/Dockerfile.postgres: PostgreSQL from Debian's packages
# Everything built is kept under the cache directory (argument 1, default
# /var/cache/sfc-container-lab): the base's tarball, the wheelhouse (keyed by the pinned
# requirements) and docker's layers in the lab's data root. The first run costs a debootstrap and
# a wheel build (about 10 minutes); a run with a warm cache only rebuilds the project's layer.
#   SFC_IMAGE_VENV   the virtualenv whose packages the image pins (default .venv-airflow: Airflow 3)
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${1:-/var/cache/sfc-container-lab}"
venv="${SFC_IMAGE_VENV:-.venv-airflow}"
docker="${SFC_DOCKER:-/usr/bin/docker}"
packages="python3,python3-venv,tini,procps,iproute2,postgresql"

die() { echo "container_image.sh: $*" >&2; exit 2; }
[ -n "${DOCKER_HOST:-}" ] || die "DOCKER_HOST is not set (the lab's own dockerd, e.g. unix:///run/sfc-lab/docker.sock)"
[ -x "$venv/bin/python" ] || die "$venv/bin/python not found: run scripts/setup.sh (it builds the Airflow virtualenv the image pins)"
command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap"
mkdir -p "$cache"
chmod 0700 "$cache"

# The host's Debian release and mirror, as its apt is configured.
. /etc/os-release
suite="${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
mirror="$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | grep -v security | sed -E 's/^URIs: *//; s/^deb +(\[[^]]*\] +)?//' | awk 'NR == 1 {print $1}' || true)"
[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list(.d)"

# Python of the image must be the ABI the wheelhouse is built for.
py="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

key="$(printf '%s\n' "$suite" "$packages" | sha256sum | cut -c1-12)"
base_tar="$cache/base-$key.tar"
if [ ! -s "$base_tar" ]; then
  echo "debootstrap $suite ($packages) from $mirror: a few minutes, once"
  root="$cache/rootfs.tmp"
  rm -rf "$root"
  debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" > "$cache/debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/debootstrap.log" >&2; die "debootstrap failed (log: $cache/debootstrap.log)"; }
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
  # The cluster Debian's postgresql package creates is not the image's: its entrypoint makes its own.
  rm -rf "$root"/var/lib/postgresql/* "$root"/etc/postgresql/*
  tar -C "$root" --numeric-owner -cf "$base_tar.tmp" .
  mv "$base_tar.tmp" "$base_tar"
  rm -rf "$root"
fi
image_py="$(tar -tf "$base_tar" | grep -oE '^\./usr/bin/python3\.[0-9]+$' | sed 's|.*/python||' | sort -u | tail -n 1)"
[ "$image_py" = "$py" ] || die "the image's Python is $image_py but $venv has $py: the wheelhouse would not fit"
base="sfc-base:$key"
if ! "$docker" image inspect "$base" >/dev/null 2>&1; then
  "$docker" import "$base_tar" "$base" >/dev/null
fi

# The wheelhouse: exactly the packages of $venv (the versions the end-to-end tests run), as wheels.
reqs="$(mktemp)"
trap 'rm -f "$reqs"' EXIT
"$venv/bin/python" -m pip freeze --exclude-editable 2>/dev/null \
  | grep -viE '^(scheduler[-_]failover[-_]controller|pytest|iniconfig)[=@ ]' | sort > "$reqs"
wkey="$(sha256sum "$reqs" | cut -c1-12)"
wheels="$cache/wheelhouse-$wkey"
if [ ! -f "$wheels/done" ]; then
  echo "building the wheelhouse ($(wc -l < "$reqs") packages) from $venv: a few minutes, once"
  rm -rf "$wheels"
  mkdir -p "$wheels/deps"
  cp "$reqs" "$wheels/requirements.txt"
  "$venv/bin/python" -m pip wheel -q --no-deps -r "$wheels/requirements.txt" -w "$wheels/deps" > "$cache/wheel.log" 2>&1 \
    || { tail -n 20 "$cache/wheel.log" >&2; die "pip wheel failed (log: $cache/wheel.log)"; }
  touch "$wheels/done"
fi

# The build context: the wheelhouse (hard links), the project's wheel, the Dockerfiles' files.
ctx="$cache/context"
rm -rf "$ctx"
mkdir -p "$ctx/wheelhouse/project" "$ctx/examples"
cp -al "$wheels/deps" "$ctx/wheelhouse/deps"
cp "$wheels/requirements.txt" "$ctx/wheelhouse/requirements.txt"
"$venv/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$ctx/wheelhouse/project" . > "$cache/project-wheel.log" 2>&1 \
  || "$venv/bin/python" -m pip wheel -q --no-deps -w "$ctx/wheelhouse/project" . >> "$cache/project-wheel.log" 2>&1 \
  || { tail -n 20 "$cache/project-wheel.log" >&2; die "building the project's wheel failed"; }
rm -rf build
cp -r docker "$ctx/docker"
cp -r examples/dags "$ctx/examples/dags"
"$docker" build -q --network none --build-arg "BASE=$base" -t sfc-airflow:latest -f "$ctx/docker/Dockerfile" "$ctx" >/dev/null
"$docker" build -q --network none --build-arg "BASE=$base" -t sfc-postgres:latest -f "$ctx/docker/Dockerfile.postgres" "$ctx" >/dev/null
rm -rf "$ctx"
echo "built sfc-airflow:latest and sfc-postgres:latest on $base"
