#!/usr/bin/env bash
# Installs the Debian packages the project needs when they are missing:
#   ffmpeg    - its shared libraries are what torchcodec (and so datasets' Audio decoding) loads
#   chromium  - only with --browser: the demo's end-to-end browser test drives it
set -euo pipefail
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
if [[ "${1:-}" == "--browser" ]]; then
    command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
if ((${#need[@]})); then
    echo "system-deps: installing ${need[*]}"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
