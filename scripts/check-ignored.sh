#!/usr/bin/env bash
# Fails when the workspace holds an #[ignore]d test that .config/expected-ignored.txt does not
# list (or the list names one that is no longer ignored): CI must never pass with a test it
# silently did not run. Builds the test binaries (as `cargo nextest run` would) to list them.
set -euo pipefail
cd "$(dirname "$0")/.."
expected=$({ grep -v '^#' .config/expected-ignored.txt || true; } | sed '/^[[:space:]]*$/d' | sort)
actual=$(cargo nextest list --workspace --run-ignored only -T oneline "$@" | sort)
if [[ "$expected" != "$actual" ]]; then
  echo "error: the ignored tests differ from .config/expected-ignored.txt" >&2
  diff <(echo "$expected") <(echo "$actual") |
    sed -n 's/^< \(..*\)/  listed, no longer ignored: \1/p; s/^> \(..*\)/  ignored, not listed: \1/p' >&2
  echo "fix: make the test run (fail with what to install or enable, never skip), or add it" \
    "to .config/expected-ignored.txt with the reason" >&2
  exit 1
fi
echo "ignored tests: $(grep -c . <<<"$actual" || true) expected, none unexpected"
