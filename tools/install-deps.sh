#!/bin/sh
# Installs the Debian packages kvc needs to build and test. The CUDA toolkit
# is optional (the cuda backend finds the driver at run time) and is not
# installed here. gnuplot draws `kvcctl eval --plot`.
set -e
pkgs="build-essential pkg-config libcmocka-dev liburing-dev bc gnuplot-nox"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && { echo "deps: all installed"; exit 0; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
