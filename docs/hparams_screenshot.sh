#!/usr/bin/env bash
# Screenshot of TensorBoard's HParams table for a study, as the README shows it.
#   bash docs/hparams_screenshot.sh STUDY [OUT.png]
# Needs Debian's chromium (apt-get install chromium) and the project installed (.venv).
set -euo pipefail
study=${1:?usage: docs/hparams_screenshot.sh STUDY [OUT.png]}
out=${2:-docs/hparams.png}
port=6123
digits=${DIGITS:-.venv/bin/digits}
"$digits" board --study "$study" --port "$port" > /dev/null &
board=$!
trap 'kill $board 2>/dev/null' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/" > /dev/null && break; sleep 1; done
sleep 5  # let TensorBoard read the runs
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$(mktemp -d)" --window-size=1600,900 --virtual-time-budget=20000 \
  --hide-scrollbars --screenshot="$(realpath -m "$out")" "http://127.0.0.1:$port/#hparams"
echo "wrote $out"
