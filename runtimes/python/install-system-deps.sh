#!/usr/bin/env bash
# Installs the Debian packages the guest runtime build and the test suite need.
# Idempotent and quiet when everything is present; needs root (or sudo) otherwise.
set -euo pipefail

packages=(clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 dpkg-dev make
          python3.11 python3-venv python3-dev gcc xz-utils bzip2 curl wrk redis-server haproxy)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(nodejs npm)

# `apt-get source` needs a deb-src entry. bookworm-security is left out on purpose:
# its newest python3.11 source was missing from the mirror when this was written.
src_list=/etc/apt/sources.list.d/wasmlambda-src.sources
need_src=0
grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ /etc/apt/sources.list || need_src=1

if [ ${#missing[@]} -eq 0 ] && [ $need_src -eq 0 ]; then
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
if [ $need_src -eq 1 ]; then
    echo "==> adding Debian deb-src entry ($src_list)"
    $SUDO tee "$src_list" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
echo "==> apt-get install ${missing[*]:-(none)}"
$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
