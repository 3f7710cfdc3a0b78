#!/usr/bin/env bash
# Installs the Debian packages the integration tests use (docker-registry, docker.io), and bench/'s
# load generator h2load (nghttp2-client), when they are missing and we are root. Never fails the build
# by itself: the test probes report what is absent, and under CI (GATE_REQUIRE_INTEGRATION=1) a
# missing tool fails those tests.
set -u
need=()
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)  # bench/ load generator
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: not root, cannot install ${need[*]}; integration tests needing them will skip" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 || \
  echo "system-deps: apt-get install ${need[*]} failed" >&2
exit 0
