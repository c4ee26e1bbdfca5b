#!/usr/bin/env bash
# Debian packages the test suite needs: Chromium for the browser test (driven by Playwright),
# and Mesa's EGL / OSMesa so that VTK renders the Slicer views without a display or GPU.
set -euo pipefail
packages=(chromium libegl1 libegl-mesa0 libosmesa6)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
