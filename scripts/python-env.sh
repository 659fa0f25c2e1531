#!/usr/bin/env bash
# The Python virtual environment of the test command: the Python SDK's tests
# (sdk/python) and the plain-pulsar-client worker test run with it. Creates
# it when missing and refreshes it when scripts/python-requirements.txt or
# sdk/python changed (a stamp holds the hash of both); otherwise does
# nothing. Safe to run from several test binaries at once (a lock). The
# interpreter's path is the last line of the output.
#
#   PULSAGA_VENV   where the environment lives (default: .venv in the repo)
#   PYTHON         the interpreter that makes it (default: python3, >= 3.9)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PULSAGA_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
req="$root/scripts/python-requirements.txt"
sdk="$root/sdk/python"

if ! command -v "$py" >/dev/null 2>&1; then
	echo "python-env: no $py on PATH; install Python 3.9 or later (Debian: apt-get install python3 python3-venv)" >&2
	exit 1
fi
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)'; then
	echo "python-env: $py is $("$py" -V 2>&1); the SDK needs Python 3.9 or later (set PYTHON)" >&2
	exit 1
fi
if ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "python-env: installing Debian's python3-venv..." >&2
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
	else
		echo "python-env: $py cannot make virtual environments (Debian: apt-get install python3-venv)" >&2
		exit 1
	fi
fi

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9

hash="$( { cat "$req"; "$py" -V 2>&1; find "$sdk" -type f \( -name '*.py' -o -name '*.toml' -o -name 'py.typed' \) -not -path '*/__pycache__/*' -not -path '*.egg-info*' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)"
stamp="$venv/.pulsaga-stamp"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ]; then
	echo "$venv/bin/python"
	exit 0
fi
echo "python-env: preparing $venv (pulsar-client, pytest, opentelemetry, mypy, the pulsaga SDK)..." >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
log="$venv/pip.log"
if ! { "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" &&
	"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$sdk"; } >"$log" 2>&1; then
	cat "$log" >&2
	echo "python-env: pip failed (above; PyPI must be reachable)" >&2
	exit 1
fi
echo "$hash" >"$stamp"
echo "$venv/bin/python"
