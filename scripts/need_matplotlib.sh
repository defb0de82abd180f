#!/usr/bin/env bash
# Installs Debian's python3-matplotlib when /usr/bin/python3 cannot import matplotlib (the
# plotting side of the benchmark and study scripts).
set -euo pipefail
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    python3-matplotlib >/dev/null
fi
