#!/usr/bin/env bash
# Render a comparison's report.html in headless Chromium and save a screenshot, to check how it looks.
#
# Usage: scripts/render_report.sh REPORT.html [SCREENSHOT.png] [WIDTHxHEIGHT]
#   REPORT.html     the page written by `lossensemble compare` (OUT/report.html)
#   SCREENSHOT.png  where to write the screenshot (default: REPORT's folder/report.png)
#   WIDTHxHEIGHT    window size (default 1280x2400; the screenshot is the top of the page)
# Needs the Debian package `chromium` (apt-get install -y chromium). Network use is switched off:
# the page must render from the file alone. Exit status 3 when chromium is missing.
set -euo pipefail

if [ $# -lt 1 ]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
report=$(realpath "$1")
shot=${2:-$(dirname "$report")/report.png}
size=${3:-1280x2400}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    echo "render_report.sh: chromium not found (apt-get install -y chromium)" >&2
    exit 3
fi
[ -f "$report" ] || { echo "render_report.sh: no such file: $report" >&2; exit 2; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
rm -f "$shot"
"$browser" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
    --screenshot="$shot" --window-size="${size/x/,}" "file://$report" >/dev/null 2>&1 || true
if [ ! -s "$shot" ]; then
    echo "render_report.sh: chromium wrote no screenshot" >&2
    exit 1
fi
echo "$shot"
