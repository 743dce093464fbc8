#!/usr/bin/env bash
# Keeps the crate's shape: one floor of layers on a shared core, glue above them (the
# picture is in the crate docs, src/lib.rs, "The shape of the crate").
#
#   bash scripts/check-layers.sh              check src/ of this repository
#   bash scripts/check-layers.sh --root DIR   check DIR/src
#   bash scripts/check-layers.sh --self-test  prove the check fails on bad imports
#
# Fails (exit 1, one `file:line: what: path` line per offending import) when, in code (not
# in comments, doc links or strings, and not in `#[cfg(test)]` items, which may use
# anything):
#   * a layer (circuit_breaker, retry, concurrency, degradation, alert, quota, fallback,
#     timeout) imports a sibling layer. The one exception: the alert sinks that are HTTP
#     clients (src/alert/webhook.rs, src/alert/alertmanager.rs) use retry and circuit_breaker;
#   * a layer imports glue (rejection, route, builder, stack, status, config, health,
#     provider_limits);
#   * a core module imports a layer or glue;
#   * any module uses a name through a lib.rs re-export (`crate::Constraints`: write
#     `crate::constraints::Constraints`);
#   * in a layer folder, service.rs or future.rs imports from layer.rs, or future.rs from
#     service.rs (imports run layer -> service -> future; shared state has its own module).
# Exit 2: the check could not run (no python3, no src/lib.rs, a top-level module placed in
# no level: add it to scripts/check_layers.py).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"

if ! command -v python3 >/dev/null 2>&1; then
  echo "check-layers: python3 not found (apt-get install -y python3)" >&2
  exit 2
fi

if [ "${1:-}" != "--self-test" ]; then
  exec python3 "$here/check_layers.py" "$@"
fi

# --self-test: on a copy of src/, the clean tree passes, each injected bad import fails with
# its file:line, and the same import in a comment, a string or a test module passes.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0

fresh() {
  rm -rf "$tmp/src"
  cp -R "$repo/src" "$tmp/src"
}

# expect <pass|fail|error> <description> [<file> <line text to append> [<expected output>]]
expect() {
  local want="$1" what="$2" file="${3:-}" text="${4:-}" needle="${5:-}"
  fresh
  if [ -n "$file" ]; then
    printf '%s\n' "$text" >>"$tmp/src/$file"
  fi
  local out rc=0
  out="$(python3 "$here/check_layers.py" --root "$tmp" 2>&1)" || rc=$?
  if [ "$want" = pass ] && [ "$rc" -ne 0 ]; then
    echo "self-test FAILED: $what: expected a pass, got exit $rc:" >&2
    echo "$out" >&2
    failures=$((failures + 1))
  elif [ "$want" = fail ] && [ "$rc" -ne 1 ]; then
    echo "self-test FAILED: $what: expected exit 1, got $rc:" >&2
    echo "$out" >&2
    failures=$((failures + 1))
  elif [ "$want" = error ] && [ "$rc" -ne 2 ]; then
    echo "self-test FAILED: $what: expected exit 2, got $rc:" >&2
    echo "$out" >&2
    failures=$((failures + 1))
  elif [ "$want" != pass ] && [ -n "$needle" ] && ! grep -qF -- "$needle" <<<"$out"; then
    echo "self-test FAILED: $what: output does not name '$needle':" >&2
    echo "$out" >&2
    failures=$((failures + 1))
  else
    echo "self-test ok: $what"
  fi
}

line_of_next() { # the line number an appended line gets
  echo $(($(wc -l <"$repo/src/$1") + 1))
}

expect pass "the tree as it is"
f=src/fallback/trigger.rs
expect fail "layer imports a sibling layer" fallback/trigger.rs \
  "use crate::circuit_breaker::CircuitBreakerLayer;" "$f:$(line_of_next fallback/trigger.rs): layer \`fallback\` imports sibling layer \`circuit_breaker\`"
expect fail "layer imports a sibling layer in a use group" quota/layer.rs \
  "use crate::{event::EventBus, retry::Backoff};" "src/quota/layer.rs:$(line_of_next quota/layer.rs): layer \`quota\` imports sibling layer \`retry\`"
expect fail "layer reaches a sibling through super::super" concurrency/limit/aimd.rs \
  "fn _f() { let _ = super::super::super::retry::MAX_WAIT; }" "layer \`concurrency\` imports sibling layer \`retry\`"
expect fail "layer imports glue" retry/future.rs \
  "fn _f() -> bool { crate::route::has_fallback(&http::Request::new(())) }" "src/retry/future.rs:$(line_of_next retry/future.rs): layer \`retry\` imports glue \`route\`"
expect fail "core imports a layer" constraints.rs \
  "use crate::quota::QuotaLayer;" "core module \`constraints\` imports layer \`quota\`"
expect fail "a name through lib.rs" event.rs \
  "use crate::PressureLevel as _L;" "src/event.rs:$(line_of_next event.rs): \`PressureLevel\` through a lib.rs re-export"
expect fail "a name through lib.rs in glue" stack.rs \
  "fn _f() -> crate::Priority { crate::Priority::Normal }" "\`Priority\` through a lib.rs re-export"
expect fail "service.rs imports from layer.rs" circuit_breaker/service.rs \
  "use super::layer::CircuitBreakerLayer as _L;" "src/circuit_breaker/service.rs:$(line_of_next circuit_breaker/service.rs): \`service.rs\` imports back from \`layer.rs\`"
expect fail "future.rs imports from service.rs" retry/future.rs \
  "use super::service::Retry as _R;" "\`future.rs\` imports back from \`service.rs\`"
expect pass "the alert webhook may use retry and the breaker" alert/webhook.rs \
  "use crate::retry::Backoff as _B;"
expect pass "a bad import in a comment" fallback/trigger.rs \
  "// use crate::circuit_breaker::CircuitBreakerLayer; and [crate::Constraints]"
expect pass "a bad import in a doc comment and a block comment" fallback/trigger.rs \
  "/// [\`x\`](crate::route::RouteKey) /* crate::Priority */"
expect pass "a bad path in a string" fallback/trigger.rs \
  "const _S: &str = \"crate::circuit_breaker::CircuitOpen\";"
expect pass "a bad import in a test module" fallback/trigger.rs \
  "#[cfg(test)] mod more_tests { use crate::status::StatusRegistry; use crate::Priority; }"
expect error "a new top-level module in no level" lib.rs "mod unplaced;" "unplaced"

if [ "$failures" -ne 0 ]; then
  echo "check-layers self-test: $failures case(s) failed" >&2
  exit 1
fi
echo "check-layers self-test: all cases behaved"
