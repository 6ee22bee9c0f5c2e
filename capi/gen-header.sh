#!/usr/bin/env bash
# Regenerates include/extmerge.h from capi/src with the pinned cbindgen (a
# dev-dependency of capi, so no separate install is needed).
#   capi/gen-header.sh           write include/extmerge.h
#   capi/gen-header.sh --check   fail if the committed header differs (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    --check) cargo test -q -p extmerge-capi --test header ;;
    "") EXTMERGE_UPDATE_HEADER=1 cargo test -q -p extmerge-capi --test header && echo "gen-header: wrote include/extmerge.h" ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
