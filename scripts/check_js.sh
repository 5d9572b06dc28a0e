#!/usr/bin/env bash
# Syntax check of the site's JavaScript with `node --check` (no npm package needed), part of
# `make lint`. Files with top-level import/export are parsed as ES modules (a plain `node --check`
# of a .js file with `import` passes whatever follows), the others as classic scripts. Without node
# it says so and passes: node is not a dependency of the project.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null; then
  echo "check_js: node is not installed; JavaScript syntax not checked"
  exit 0
fi

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.js' '*.mjs' | sort -u)
else
  mapfile -t files < <(find . \( -name .venv -o -name node_modules -o -name staticfiles -o -name .git \) -prune \
    -o \( -name '*.js' -o -name '*.mjs' \) -type f -print | sort)
fi

errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
failed=0
checked=0
for file in "${files[@]}"; do
  [ -f "$file" ] || continue  # listed by git, removed from the work tree
  if [[ "$file" == *.mjs ]] || grep -Eq '^(import|export)[[:space:]{*]' "$file"; then
    node --input-type=module --check <"$file" 2>"$errors" || { echo "$file:"; cat "$errors"; failed=1; }
  else
    node --check "$file" 2>"$errors" || { cat "$errors"; failed=1; }
  fi
  checked=$((checked + 1))
done
[ "$failed" = 0 ] && echo "check_js: $checked JavaScript files parse"
exit "$failed"
