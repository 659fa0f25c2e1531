#!/usr/bin/env bash
# The dashboard's end-to-end test drives a real headless Chromium. Install
# Debian's package when it is missing (needs root, as on the project's
# machines); otherwise say what to do.
set -euo pipefail
for c in chromium chromium-browser google-chrome; do
	command -v "$c" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "chromium: installing Debian's chromium for the dashboard test..." >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
	exit 0
fi
echo "chromium: not found; install Chromium (Debian: apt-get install chromium) for the dashboard test" >&2
exit 1
