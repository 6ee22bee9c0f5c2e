#!/usr/bin/env bash
# Soak test: CYCLES (default 200) cycles of merge / refresh / unmerge with random churn
# of the installed extensions, by two runners at once on the same root: the CLI
# (target/debug/extmerge, a new process for each operation) and one long-lived C
# program linked with libextmerge.a (tests/soak/soak-client.c, driven over a pipe), so
# that leaks show up as open fds or RSS of that one process growing.
#
#   sudo tests/soak/run-soak.sh [CYCLES]
#   SOAK_SEED=N        the seed of the churn and of the operations (printed; the runners'
#                      interleaving is up to the scheduler, so a seed replays the same
#                      choices, not the same timing)
#   SOAK_MAX_SECONDS=S stop after S seconds (the cycles run so far are reported)
#   SOAK_RSS_SLACK_KB  allowed RSS growth of the C client after warm-up (default 4096)
#   SOAK_NO_BUILD=1    use the binaries in target/debug as they are
#   SOAK_KEEP=1        keep the work directory (logs) under /tmp
#
# Each cycle:
#   1. churn (script): 1-2 of the extension slots change (sysext s0-s5 in
#      /var/lib/extensions, confext c0-c3 in /var/lib/confexts): removed, or made a
#      directory or an erofs image (mkfs.erofs), compatible or not (ID=otheros), with a
#      broken extension-release file or none; and now and then a garbage junk.raw.
#   2. the CLI and the C client each do one operation at the same time (merge, refresh,
#      unmerge, or the read-only plan/list that mounts images too), for sysext, confext
#      or both; they serialise on extmerge's lock (/run/extmerge/lock).
#   3. checks (see below); then, every other cycle at random, the client unmerges
#      everything and the strict checks follow.
#
# Legal outcomes of an operation: success; "hierarchy is already merged" from merge (the
# other runner merged first); the unknown-file-system error naming junk.raw from merge,
# refresh, plan or list while junk.raw is installed and the class includes sysext. Any
# other error message, an exit by a signal or with another code, a message about a
# panic, or a runner that hangs (5 min) fails the cycle.
#
# Checks after every cycle (in the private mount namespace):
#   - mounts below the work dir: only overlays on ROOT/usr, ROOT/opt, ROOT/etc, at most
#     one each; none below /run/extmerge; after the unmerge, none at all;
#   - the C client's status list names as many merged hierarchies as there are overlays;
#   - loop devices whose backing file is in the work dir (/sys/block/loop*/loop/
#     backing_file): no more than the extensions listed as merged; after the unmerge,
#     none (waited for up to 2 s, loop devices are released asynchronously);
#   - /run/extmerge holds nothing but the lock file (no staging directory left);
#   - the C client's open fds (/proc/PID/fd) do not grow after warm-up (the first
#     5% of cycles, 10 to 100), and its VmRSS stays within SOAK_RSS_SLACK_KB of the
#     largest value seen in warm-up.
# Prints a figures summary and "N passed, M failed" (cycles); exits 1 on any failure.
# Runs as root inside `unshare -m` with its own tmpfs on /run: the machine's /usr, /etc,
# /opt and /run/extmerge are never touched.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

CYCLES=${1:-200}
case $CYCLES in
'' | *[!0-9]* | 0)
    echo "usage: $0 [CYCLES]" >&2
    exit 2
    ;;
esac

if [ -z "${EXTMERGE_SOAK_IN_NS:-}" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "SKIP: run-soak.sh needs root (mount namespaces, overlayfs, loop devices)"
        exit 0
    fi
    for tool in unshare mkfs.erofs cc; do
        if ! command -v "$tool" >/dev/null; then
            echo "run-soak: $tool is missing (util-linux, erofs-utils, gcc)" >&2
            echo "0 passed, 1 failed"
            exit 1
        fi
    done
    SEED=${SOAK_SEED:-$(((RANDOM << 15 | RANDOM) % 1000000))}
    if [ -z "${SOAK_NO_BUILD:-}" ]; then
        echo "==> building libextmerge and the CLI (cargo build -p extmerge-capi --bin extmerge)"
        if ! cargo build -q -p extmerge-capi || ! cargo build -q --bin extmerge; then
            echo "run-soak: build failed"
            echo "0 passed, 1 failed"
            exit 1
        fi
    fi
    work=$(mktemp -d /tmp/extmerge-soak.XXXXXX)
    mkdir -p "$work/bin"
    # Own copies: a rebuild during a long run does not change what is being soaked.
    cp target/debug/extmerge "$work/bin/extmerge"
    # shellcheck disable=SC2086
    if ! cc -std=c11 -Wall -Wextra -Werror -O1 -g -Iinclude tests/soak/soak-client.c \
        target/debug/libextmerge.a -lutil -lrt -lpthread -lm -ldl -o "$work/bin/soak-client"; then
        echo "run-soak: cannot build tests/soak/soak-client.c"
        echo "0 passed, 1 failed"
        rm -rf "$work"
        exit 1
    fi
    EXTMERGE_SOAK_IN_NS=1 SOAK_WORK=$work SOAK_SEED=$SEED \
        unshare -m --propagation private -- bash "$0" "$CYCLES"
    rc=$?
    # The namespace is gone and its mounts with it: no loop device may still be bound
    # to a file of ours.
    sleep 1
    left=$(grep -ls "^$work/" /sys/block/loop*/loop/backing_file 2>/dev/null)
    if [ -n "$left" ]; then
        echo "run-soak: loop devices still bound to $work after the namespace ended: $left"
        rc=1
    fi
    if [ -n "${SOAK_KEEP:-}" ]; then
        echo "run-soak: work directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
fi

# ---- inside the private mount namespace ------------------------------------------------
work=$SOAK_WORK
SEED=$SOAK_SEED
RANDOM=$SEED
MAX_SECONDS=${SOAK_MAX_SECONDS:-0}
RSS_SLACK=${SOAK_RSS_SLACK_KB:-4096}
CLI=$work/bin/extmerge
R=$work/root
SYS=$R/var/lib/extensions
CONF=$R/var/lib/confexts
mount -t tmpfs -o mode=0755 tmpfs /run || exit 1
mkdir -p "$R/etc" "$R/usr/share" "$R/opt" "$SYS" "$CONF" "$work/stage" "$work/trees"
printf 'ID=soakos\nVERSION_ID=1\n' >"$R/etc/os-release"
echo host >"$R/usr/share/host-file"

echo "soak: seed $SEED, $CYCLES cycles, work dir $work"

# rnd N: a number in [0, N) in $r_ (no subshell: the seeded sequence must advance).
rnd() { r_=$((RANDOM % $1)); }

# ---- the extension slots ----------------------------------------------------------------
SLOTS=(s0 s1 s2 s3 s4 s5 c0 c1 c2 c3)
declare -A GEN
for s in "${SLOTS[@]}"; do GEN[$s]=0; done
junk=0

# The release file for kind good / incompat / badrel (norel: none).
release_text() {
    case $1 in
    good)
        rnd 2
        if [ "$r_" = 0 ]; then printf 'ID=soakos\nVERSION_ID=1\n'; else printf 'ID=_any\n'; fi
        ;;
    incompat) printf 'ID=otheros\nVERSION_ID=1\n' ;;
    badrel) printf '%s' 'ID="soakos' $'\nVERSION_ID=\001\377 \\' ;;
    esac
}

# make_tree SLOT REL: the slot's tree in $work/trees/SLOT (generation GEN[SLOT]).
make_tree() {
    local s=$1 rel=$2 t=$work/trees/$1
    rm -rf "$t"
    case $s in
    s*)
        mkdir -p "$t/usr/lib/extension-release.d" "$t/usr/share/soak" "$t/opt/soak-$s"
        echo "$s ${GEN[$s]}" >"$t/usr/share/soak/$s"
        echo "$s ${GEN[$s]}" >"$t/opt/soak-$s/file"
        [ "$rel" = norel ] || release_text "$rel" >"$t/usr/lib/extension-release.d/extension-release.$s"
        ;;
    c*)
        mkdir -p "$t/etc/extension-release.d" "$t/etc/soak"
        echo "$s ${GEN[$s]}" >"$t/etc/soak/$s.conf"
        [ "$rel" = norel ] || release_text "$rel" >"$t/etc/extension-release.d/extension-release.$s"
        ;;
    esac
}

slot_dir() { case $1 in s*) echo "$SYS" ;; c*) echo "$CONF" ;; esac; }

# set_slot SLOT KIND: KIND is none, dir-good, img-good, dir-incompat, img-incompat,
# dir-badrel, img-badrel, dir-norel. Built aside, then renamed into place.
set_slot() {
    local s=$1 kind=$2 d
    d=$(slot_dir "$s")
    GEN[$s]=$((GEN[$s] + 1))
    rm -rf "${d:?}/$s" "$d/$s.raw"
    [ "$kind" = none ] && return 0
    make_tree "$s" "${kind#*-}"
    case $kind in
    dir-*) mv "$work/trees/$s" "$d/$s" ;;
    img-*)
        if ! mkfs.erofs --quiet -T0 "$work/stage/$s.raw" "$work/trees/$s" >/dev/null 2>&1; then
            echo "soak: mkfs.erofs failed for $s" >&2
            return 1
        fi
        mv "$work/stage/$s.raw" "$d/$s.raw"
        ;;
    esac
}

KINDS=(none none dir-good dir-good img-good img-good dir-incompat img-incompat dir-badrel
    img-badrel dir-norel)

churn() {
    local n i
    rnd 2
    n=$((r_ + 1))
    for ((i = 0; i < n; i++)); do
        rnd ${#SLOTS[@]}
        local s=${SLOTS[$r_]}
        rnd ${#KINDS[@]}
        set_slot "$s" "${KINDS[$r_]}" || return 1
    done
    rnd 100
    if [ "$junk" = 0 ] && [ "$r_" -lt 6 ]; then
        head -c $((4096 + RANDOM % 8192)) /dev/urandom >"$work/stage/junk.raw"
        mv "$work/stage/junk.raw" "$SYS/junk.raw"
        junk=1
    elif [ "$junk" = 1 ] && [ "$r_" -lt 40 ]; then
        rm -f "$SYS/junk.raw"
        junk=0
    fi
}

# ---- the C client -----------------------------------------------------------------------
coproc CLIENT { exec "$work/bin/soak-client" "$R" 2>>"$work/client.err"; }
cpid=$CLIENT_PID
exec {cin}>&"${CLIENT[1]}" {cout}<&"${CLIENT[0]}"

# ask CMD: sends CMD to the client, its answer in $reply; 1 if it does not answer.
ask() {
    reply=
    if ! printf '%s\n' "$1" 2>/dev/null 1>&"$cin"; then return 1; fi
    read -r -t 300 -u "$cout" reply
}

# ---- figures ----------------------------------------------------------------------------
declare -A OUTCOME
passed=0
failed=0
shown=0
fd_min='' fd_max='' rss_min='' rss_max='' fd_base='' rss_base=0 rss_after_max=0
warmup=$((CYCLES / 20))
((warmup < 10)) && warmup=10
((warmup > 100)) && warmup=100
cycle_errors=()
err() { cycle_errors+=("$*"); }

# classify RUNNER VERB CLASS STATUS MESSAGE: counts the outcome; err if not legal.
classify() {
    local runner=$1 verb=$2 class=$3 status=$4 msg=$5 kind
    if [ "$status" = ok ]; then
        kind=ok
    elif [ "$status" != error ]; then
        kind=$status
    elif [ "$verb" = merge ] && [[ $msg == *"hierarchy is already merged"* ]]; then
        kind=busy
    elif [ "$junk" = 1 ] && [ "$class" != confext ] && [[ $msg == *junk.raw*"unknown file system"* ]]; then
        kind=broken-image
    else
        kind=unexpected
    fi
    OUTCOME[$runner:$verb:$kind]=$((${OUTCOME[$runner:$verb:$kind]:-0} + 1))
    case $kind in
    ok | busy | broken-image) ;;
    *) err "$runner $verb --class=$class: $kind: $msg" ;;
    esac
    if [[ $msg == *panick* || $msg == *"internal error"* ]]; then
        err "$runner $verb --class=$class: message about a panic: $msg"
    fi
}

VERBS=(merge merge merge refresh refresh refresh refresh unmerge unmerge read)
CLASSES=(sysext confext both)

# The mount points and loop devices of ours; sets n_overlays, stray (text), n_loops.
scan() {
    local line f
    n_overlays=0
    stray=
    local -A seen=()
    while IFS= read -r line; do
        read -r -a f <<<"$line"
        local point=${f[4]} fstype=
        local i
        for ((i = 6; i < ${#f[@]}; i++)); do
            if [ "${f[$i]}" = - ]; then fstype=${f[$((i + 1))]}; break; fi
        done
        case $point in
        "$R/usr" | "$R/opt" | "$R/etc")
            if [ "$fstype" != overlay ] || [ -n "${seen[$point]:-}" ]; then
                stray+=" $point($fstype)"
            else
                seen[$point]=1
                n_overlays=$((n_overlays + 1))
            fi
            ;;
        "$work"/* | /run/extmerge/*) stray+=" $point($fstype)" ;;
        esac
    done </proc/self/mountinfo
    n_loops=0
    for f in /sys/block/loop*/loop/backing_file; do
        [ -r "$f" ] || continue
        read -r line <"$f" 2>/dev/null || continue
        [[ $line == "$work"/* ]] && n_loops=$((n_loops + 1))
    done
}

# Extensions listed as merged (distinct names over all hierarchies).
merged_names() {
    local h f n
    local -A names=()
    for h in "$R/usr/.systemd-sysext/extensions" "$R/opt/.systemd-sysext/extensions" \
        "$R/etc/.systemd-confext/confexts"; do
        [ -r "$h" ] || continue
        while IFS= read -r n; do [ -n "$n" ] && names[$n]=1; done <"$h"
    done
    n_merged_names=${#names[@]}
}

check_state() {
    local strict=$1 tries=0 e
    while :; do
        scan
        merged_names
        local want_loops=$n_merged_names
        [ "$strict" = 1 ] && want_loops=0
        if [ -z "$stray" ] && { [ "$strict" = 0 ] || [ "$n_overlays" = 0 ]; } &&
            [ "$n_loops" -le "$want_loops" ]; then
            break
        fi
        tries=$((tries + 1))
        if [ "$tries" -ge 10 ]; then
            [ -n "$stray" ] && err "mounts left:$stray"
            [ "$strict" = 1 ] && [ "$n_overlays" != 0 ] && err "$n_overlays overlays left after unmerge"
            [ "$n_loops" -gt "$want_loops" ] &&
                err "$n_loops loop devices bound to files of ours, at most $want_loops expected"
            break
        fi
        sleep 0.2
    done
    if [ "$strict" = 1 ]; then
        # The host's own files are back, the extensions' gone.
        [ -e "$R/usr/share/host-file" ] || err "ROOT/usr/share/host-file missing after unmerge"
        for e in "$R/usr/share/soak" "$R/opt/soak-s0" "$R/etc/soak"; do
            [ -e "$e" ] && err "${e#"$R"} still there after unmerge"
        done
    fi
    for e in /run/extmerge/* /run/extmerge/.[!.]*; do
        [ -e "$e" ] || continue
        [ "$e" = /run/extmerge/lock ] && continue
        err "left in /run/extmerge: ${e#/run/extmerge/}"
    done
    if ask "status both"; then
        local -a a
        read -r -a a <<<"$reply"
        if [ "${a[0]:-}" != OK ] || [ "${a[2]:-}" != "$n_overlays" ]; then
            err "client status '$reply' but $n_overlays overlays mounted"
        fi
    else
        err "client did not answer status"
    fi
}

client_figures() {
    local fds=(/proc/"$cpid"/fd/*) k v rest
    fd_now=${#fds[@]}
    rss_now=0
    while read -r k v rest; do
        [ "$k" = VmRSS: ] && rss_now=$v && break
    done </proc/"$cpid"/status
    : "$rest"
}

fail_cycle() {
    failed=$((failed + 1))
    if [ "$shown" -lt 20 ]; then
        shown=$((shown + 1))
        echo "FAIL: cycle $1 (cli: $2, client: $3):"
        printf '    %s\n' "${cycle_errors[@]}"
    fi
}

start=$EPOCHREALTIME
progress=$((CYCLES / 20))
((progress < 1)) && progress=1
done_cycles=0
aborted=
for ((c = 1; c <= CYCLES; c++)); do
    cycle_errors=()
    if ! churn; then err "churn failed"; fi

    rnd ${#VERBS[@]}
    cverb=${VERBS[$r_]}
    rnd 3
    cclass=${CLASSES[$r_]}
    rnd ${#VERBS[@]}
    kverb=${VERBS[$r_]}
    rnd 3
    kclass=${CLASSES[$r_]}
    [ "$cverb" = read ] && cverb=plan
    [ "$kverb" = read ] && kverb=list

    # Both runners at once.
    "$CLI" --root="$R" --class="$cclass" --no-pager "$cverb" >"$work/cli.out" 2>"$work/cli.err" &
    clipid=$!
    if ! ask "$kverb $kclass"; then
        err "client gave no answer to '$kverb $kclass' (exited or hung)"
        aborted=1
    fi
    wait "$clipid"
    crc=$?
    climsg=$(tr '\n' ' ' <"$work/cli.err")
    case $crc in
    0) classify cli "$cverb" "$cclass" ok "$climsg" ;;
    1) classify cli "$cverb" "$cclass" error "$climsg" ;;
    *) classify cli "$cverb" "$cclass" "exit-$crc" "$climsg" ;;
    esac
    if [ -z "$aborted" ]; then
        case $reply in
        "OK "*) classify client "$kverb" "$kclass" ok "$reply" ;;
        "ERR "*) classify client "$kverb" "$kclass" error "$reply" ;;
        *) classify client "$kverb" "$kclass" garbled "$reply" ;;
        esac
    fi

    if [ -z "$aborted" ]; then
        check_state 0
        rnd 2
        if [ "$r_" = 0 ] || [ "$c" = "$CYCLES" ]; then
            if ask "unmerge both" && [ "$reply" = "OK unmerge" ]; then
                OUTCOME[client:final-unmerge:ok]=$((${OUTCOME[client:final-unmerge:ok]:-0} + 1))
            else
                err "final unmerge: '$reply'"
            fi
            check_state 1
        fi
        if ((c % 97 == 0)); then
            if ! ask reset || [ "$reply" != "OK reset" ]; then err "reset: '$reply'"; fi
        fi
    fi

    if [ -d /proc/"$cpid" ]; then
        client_figures
        [ -z "$fd_min" ] || [ "$fd_now" -lt "$fd_min" ] && fd_min=$fd_now
        [ -z "$fd_max" ] || [ "$fd_now" -gt "$fd_max" ] && fd_max=$fd_now
        [ -z "$rss_min" ] || [ "$rss_now" -lt "$rss_min" ] && rss_min=$rss_now
        [ -z "$rss_max" ] || [ "$rss_now" -gt "$rss_max" ] && rss_max=$rss_now
        if [ "$c" -le "$warmup" ]; then
            fd_base=$fd_now
            [ "$rss_now" -gt "$rss_base" ] && rss_base=$rss_now
        else
            [ "$rss_now" -gt "$rss_after_max" ] && rss_after_max=$rss_now
            [ "$fd_now" -gt "$fd_base" ] && err "client fds grew: $fd_now, $fd_base after warm-up"
            [ "$rss_now" -gt $((rss_base + RSS_SLACK)) ] &&
                err "client RSS grew: $rss_now kB, at most $rss_base + $RSS_SLACK kB after warm-up"
        fi
    else
        err "the C client is gone"
        aborted=1
    fi

    if [ ${#cycle_errors[@]} -eq 0 ]; then
        passed=$((passed + 1))
    else
        fail_cycle "$c" "$cverb $cclass" "$kverb $kclass"
    fi
    done_cycles=$c
    if ((c % progress == 0)); then
        printf 'soak: cycle %d/%d, %s s, client fds %s, RSS %s kB, %d failed\n' \
            "$c" "$CYCLES" "$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.0f", b - a}')" \
            "${fd_now:-?}" "${rss_now:-?}" "$failed"
    fi
    [ -n "$aborted" ] && { echo "soak: aborted after cycle $c"; break; }
    if [ "$MAX_SECONDS" -gt 0 ] && (($(date +%s) - ${start%.*} >= MAX_SECONDS)); then
        echo "soak: SOAK_MAX_SECONDS=$MAX_SECONDS reached after cycle $c"
        break
    fi
done

fd_list=$(cd /proc/"$cpid"/fd 2>/dev/null && for f in *; do printf '%s->%s ' "$f" "$(readlink "$f")"; done)
# Leave nothing merged.
if [ -z "$aborted" ]; then
    ask "unmerge both" >/dev/null || true
    ask quit || true
fi
exec {cin}>&-
wait "$cpid" 2>/dev/null
client_rc=$?
if [ "$client_rc" != 0 ]; then
    echo "soak: the C client exited with status $client_rc"
    failed=$((failed + 1))
fi
if [ -s "$work/client.err" ]; then
    echo "soak: the C client wrote to stderr:"
    head -20 "$work/client.err" | sed 's/^/    /'
fi

secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
echo
echo "soak: figures"
echo "  seed               $SEED"
echo "  cycles             $done_cycles of $CYCLES ($secs s, $(awk -v n="$done_cycles" -v s="$secs" 'BEGIN {printf "%.2f", n / s}') cycles/s)"
echo "  client fds         min $fd_min, max $fd_max (after warm-up of $warmup cycles: $fd_base)"
echo "  client fds at end  $fd_list"
echo "  client VmRSS       min $rss_min kB, max $rss_max kB (warm-up max $rss_base kB, after warm-up max $rss_after_max kB)"
echo "  outcomes:"
for k in $(printf '%s\n' "${!OUTCOME[@]}" | sort); do
    printf '    %-32s %d\n' "$k" "${OUTCOME[$k]}"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
