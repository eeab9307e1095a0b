#!/bin/sh
# Installs the real hook managers the coexistence tests run against (Husky and lefthook from
# the npm registry, pre-commit from PyPI) into DIR, so `make test` exercises the real tools.
# Usage: tests/tools/install.sh DIR PYTHON
set -eu
dir=$1
python=$2
mkdir -p "$dir"
if command -v npm >/dev/null 2>&1; then
    [ -f "$dir/package.json" ] || printf '{"private": true}\n' > "$dir/package.json"
    # --ignore-scripts: lefthook's postinstall would run `lefthook install` in the caller's repository.
    (cd "$dir" && npm install --silent --no-audit --no-fund --ignore-scripts husky@9.1.7 lefthook@2.2.2)
else
    echo "tests/tools/install.sh: npm not found; the Husky and lefthook cases will use replicas" >&2
fi
"$python" -m venv "$dir/pcvenv"
"$dir/pcvenv/bin/pip" install --quiet --disable-pip-version-check pre-commit==4.7.0
