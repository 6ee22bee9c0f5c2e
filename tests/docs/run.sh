#!/usr/bin/env bash
# Tests of the documentation, the installers and the shell completion:
#   - the man pages (man/*.scd) build with scdoc and render without warnings (groff -ww,
#     man -l), with the sections a page needs;
#   - extmerge(8) documents exactly the options of `extmerge --help` (and its verbs, each
#     one the program accepts) and every environment variable the code reads;
#     extmerge-initrd(8) exactly the options, verbs and kernel command-line switches of
#     `extmerge-initrd --help`; libextmerge(3) every function of include/extmerge.h (and
#     no other);
#   - install.sh, initrd-hooks/install.sh and capi/install.sh into a DESTDIR with
#     PREFIX=/usr/local: binaries, man pages in man8/man3, the completion where
#     bash-completion loads it, the dracut module in dracut's own directory, the
#     mkosi-initrd drop-in naming the tree that was installed; Documentation= of the
#     units points at real pages;
#   - the completion (completion/extmerge.bash), with and without bash-completion.
# Installs scdoc, groff-base, man-db and bash-completion when missing and root (apt-get
# --no-upgrade). Ends with "N passed, M failed"; exits 1 if anything failed.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

passed=0
failed=0
skipped=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
skip() { skipped=$((skipped + 1)); echo "SKIP: $*"; }
step() { printf '\n==> %s\n' "$*"; }
finish() {
    echo
    if [ "$skipped" -gt 0 ]; then
        echo "$passed passed, $failed failed, $skipped skipped"
    else
        echo "$passed passed, $failed failed"
    fi
    [ "$failed" = 0 ]
    exit
}
# check "DESCRIPTION" CMD...: pass when CMD succeeds.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
# same_set WHAT "LIST A" "NAME A" "LIST B" "NAME B": the two newline-separated lists
# have the same elements; a failure names what is only in one of them.
same_set() {
    local what=$1 a b only_a only_b
    a=$(printf '%s\n' "$2" | sed '/^$/d' | sort -u)
    b=$(printf '%s\n' "$4" | sed '/^$/d' | sort -u)
    only_a=$(comm -23 <(echo "$a") <(echo "$b") | tr '\n' ' ')
    only_b=$(comm -13 <(echo "$a") <(echo "$b") | tr '\n' ' ')
    if [ -z "$a" ]; then
        fail "$what: no entries found in $3"
    elif [ -z "$only_a$only_b" ]; then
        pass "$what ($(echo "$a" | wc -l) entries)"
    else
        fail "$what: only in $3: [${only_a% }], only in $5: [${only_b% }]"
    fi
}

need=()
command -v scdoc >/dev/null || need+=(scdoc)
command -v groff >/dev/null || need+=(groff-base)
command -v man >/dev/null || need+=(man-db)
[ -f /usr/share/bash-completion/bash_completion ] || need+=(bash-completion)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${need[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends --no-upgrade "${need[@]}"; } >/dev/null ||
        echo "could not install ${need[*]}" >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export LC_ALL=C.UTF-8

# The lines of scdoc source FILE in section "# NAME" (up to the next "# " header).
section() { awk -v h="# $2" '$0 == h { on = 1; next } /^# / { on = 0 } on' "$1"; }

# ------------------------------------------------------------------ man pages
step "man pages: build with scdoc, render without warnings"
if ! command -v scdoc >/dev/null; then
    fail "scdoc is not installed (Debian: apt-get install scdoc)"
    finish
fi
if sh man/build.sh "$work/man"; then
    pass "man/build.sh"
else
    fail "man/build.sh"
    finish
fi
for src in man/*.scd; do
    page=$work/man/$(basename "$src" .scd)
    if [ ! -s "$page" ]; then
        fail "$(basename "$page"): not built"
        continue
    fi
    w=$(groff -k -man -Tutf8 -ww -z "$page" 2>&1)
    if [ -z "$w" ]; then
        pass "$(basename "$page"): groff -man -ww shows no warnings"
    else
        fail "$(basename "$page"): groff warnings: $(echo "$w" | head -n 5 | tr '\n' ' ')"
    fi
    out=$(MANWIDTH=80 man --warnings -l "$page" 2>"$work/man.err")
    if [ -s "$work/man.err" ] || ! grep -q '^NAME' <<<"$out"; then
        fail "$(basename "$page"): man -l: $(head -n 5 "$work/man.err" | tr '\n' ' ')"
    else
        pass "$(basename "$page"): man -l renders it ($(echo "$out" | wc -l) lines)"
    fi
    nosec=()
    for s in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do
        grep -qx "# $s" "$src" || nosec+=("$s")
    done
    case $src in
        *.8.scd) for s in OPTIONS "EXIT STATUS" FILES; do grep -qx "# $s" "$src" || nosec+=("$s"); done ;;
    esac
    check "$(basename "$src"): has the sections a page needs${nosec[*]:+ (missing: ${nosec[*]})}" \
        test ${#nosec[@]} = 0
done
check "extmerge(8) has an ENVIRONMENT section" grep -qx '# ENVIRONMENT' man/extmerge.8.scd
check "extmerge(8) refers to systemd-sysext(8)" \
    grep -q '\*systemd-sysext\*(8)' <(section man/extmerge.8.scd "SEE ALSO")

# ------------------------------------------------------------------ --help vs man
step "extmerge --help and extmerge-initrd --help vs their man pages"
if ! cargo build --bin extmerge --bin extmerge-initrd; then
    fail "cargo build --bin extmerge --bin extmerge-initrd"
    finish
fi
B=target/debug/extmerge
BI=target/debug/extmerge-initrd
# Options in a help text: -x / --word tokens at the start of a word.
help_opts() { grep -oE '(^|[][ ,|])--?[a-zA-Z][a-zA-Z0-9-]*' | sed 's/^[][ ,|]//'; }
# Options documented in a man page: the option tokens of the "*-..." item lines of OPTIONS.
man_opts() {
    section "$1" OPTIONS | grep '^\*-' | grep -oE '(^|[^a-zA-Z0-9-])--?[a-zA-Z][a-zA-Z0-9-]*' |
        sed 's/^[^-]*//'
}
# Items of a man page section: the first bold word of each "*item*" line, without "=value".
man_items() { section "$1" "$2" | grep -oE '^\*[a-z][a-z0-9.-]*' | tr -d '*'; }
# Verbs in a help text: the first word of each line in the "Verbs:" block.
help_block() { awk -v h="$1" '$0 == h { on = 1; next } /^[^ ]/ || /^$/ { on = 0 } on { print $1 }'; }

if help=$("$B" --help); then
    pass "extmerge --help exits 0"
else
    fail "extmerge --help exits non-zero"
fi
same_set "extmerge: options of --help = options in extmerge(8)" \
    "$(help_opts <<<"$help")" "extmerge --help" "$(man_opts man/extmerge.8.scd)" "extmerge(8)"
help_verbs=$(help_block "Verbs:" <<<"$help")
man_verbs=$(man_items man/extmerge.8.scd VERBS)
miss=$(comm -23 <(sort -u <<<"$help_verbs") <(sort -u <<<"$man_verbs") | tr '\n' ' ')
if [ -n "$help_verbs" ] && [ -z "$miss" ]; then
    pass "extmerge: every verb of --help is in extmerge(8) ($(echo "$help_verbs" | wc -l))"
else
    fail "extmerge: verbs of --help missing in extmerge(8): [${miss% }] (found: $(echo "$help_verbs" | tr '\n' ' '))"
fi
# Each documented verb is one the program accepts: its error (for a root that does not
# exist) is not the one an unknown verb gets, with the verb's name masked.
unknown=$("$B" --root=/nonexistent/extmerge-docs-test zzbogusverb 2>&1 | sed 's/zzbogusverb/VERB/g')
bad=()
for v in $man_verbs; do
    got=$("$B" --root=/nonexistent/extmerge-docs-test "$v" 2>&1 | sed "s/$v/VERB/g")
    [ "$got" = "$unknown" ] && bad+=("$v")
done
check "extmerge: every verb in extmerge(8) is accepted by extmerge${bad[*]:+ (not: ${bad[*]})}" \
    test ${#bad[@]} = 0 -a -n "$man_verbs"

if ihelp=$("$BI" --help); then
    pass "extmerge-initrd --help exits 0"
else
    fail "extmerge-initrd --help exits non-zero"
fi
# Only the Usage and Options blocks: the kernel switches are compared below.
same_set "extmerge-initrd: options of --help = options in extmerge-initrd(8)" \
    "$(awk '/^Kernel command line:/ { exit } { print }' <<<"$ihelp" | help_opts)" "extmerge-initrd --help" \
    "$(man_opts man/extmerge-initrd.8.scd)" "extmerge-initrd(8)"
same_set "extmerge-initrd: verbs of --help = verbs in extmerge-initrd(8)" \
    "$(help_block "Verbs:" <<<"$ihelp")" "extmerge-initrd --help" \
    "$(man_items man/extmerge-initrd.8.scd VERBS)" "extmerge-initrd(8)"
same_set "extmerge-initrd: kernel command-line switches of --help = those in extmerge-initrd(8)" \
    "$(help_block "Kernel command line:" <<<"$ihelp" | sed 's/=.*//')" "extmerge-initrd --help" \
    "$(section man/extmerge-initrd.8.scd "KERNEL COMMAND LINE" | grep '^\*' |
        grep -oE '\*[a-z][a-z.]*=' | tr -d '*=')" "extmerge-initrd(8)"

# ------------------------------------------------------------------ environment, C API
step "environment variables and C functions vs the man pages"
# Every SYSTEMD_*/EXTMERGE_* name the code uses (outside #[cfg(test)] modules).
code_env() {
    local f
    for f in "$@"; do
        awk '/^#\[cfg\(test\)\]/ { exit } { print }' "$f"
    done | grep -oE '"(SYSTEMD|EXTMERGE)_[A-Z0-9_]+"' | tr -d '"' | sort -u
}
env_cli=$(code_env src/*.rs src/*/*.rs src/bin/*.rs)
env_man=$(section man/extmerge.8.scd ENVIRONMENT | grep '^\*' | grep -oE '[A-Z][A-Z0-9_]{3,}' | sort -u)
miss=$(comm -23 <(echo "$env_cli") <(echo "$env_man") | tr '\n' ' ')
if [ -n "$env_cli" ] && [ -z "$miss" ]; then
    pass "extmerge(8) ENVIRONMENT names every variable the code reads ($(echo "$env_cli" | wc -l))"
else
    fail "extmerge(8) ENVIRONMENT lacks: [${miss% }]"
fi
for v in SYSTEMD_SYSEXT_HIERARCHIES SYSTEMD_CONFEXT_HIERARCHIES SYSTEMD_SYSEXT_MUTABLE_MODE \
    SYSTEMD_CONFEXT_MUTABLE_MODE SYSTEMD_OS_RELEASE; do
    grep -qx "$v" <<<"$env_cli" || fail "the code no longer reads $v: update this test and the page"
done
env_capi=$(code_env capi/src/*.rs)
env_man3=$(section man/libextmerge.3.scd ENVIRONMENT | grep -oE '[A-Z][A-Z0-9_]{3,}' | sort -u)
miss=$(comm -23 <(echo "$env_capi") <(echo "$env_man3") | tr '\n' ' ')
check "libextmerge(3) ENVIRONMENT names the variables the C API reads${miss:+ (lacks: ${miss% })}" \
    test -n "$env_capi" -a -z "$miss"

declared=$(grep -oE '\bextmerge_[a-z_]+\(' include/extmerge.h | tr -d '(' | sort -u)
described=$(section man/libextmerge.3.scd DESCRIPTION |
    grep -oE '\bextmerge_[a-z_]+\*?\(' | tr -d '*(' | sort -u)
synopsis=$(section man/libextmerge.3.scd SYNOPSIS | grep -oE '\bextmerge_[a-z_]+\(' | tr -d '(' | sort -u)
same_set "libextmerge(3) DESCRIPTION: every function of include/extmerge.h, and no other" \
    "$declared" "include/extmerge.h" "$described" "libextmerge(3)"
same_set "libextmerge(3) SYNOPSIS: every function of include/extmerge.h, and no other" \
    "$declared" "include/extmerge.h" "$synopsis" "libextmerge(3) SYNOPSIS"
consts=$(sed -n 's/^#define \(EXTMERGE_[A-Z0-9_]*\) .*/\1/p' include/extmerge.h | sort -u)
miss=$(comm -23 <(echo "$consts") <(grep -oE 'EXTMERGE_[A-Z0-9_]+' man/libextmerge.3.scd | sort -u) |
    tr '\n' ' ')
check "libextmerge(3) names every constant of include/extmerge.h ($(echo "$consts" | wc -l))${miss:+ (lacks: ${miss% })}" \
    test -n "$consts" -a -z "$miss"

# ------------------------------------------------------------------ installers
step "install scripts into a DESTDIR with PREFIX=/usr/local"
D=$work/dest
export PREFIX=/usr/local WITH_MAN=yes
if DESTDIR=$D bash install.sh --debug --no-build >"$work/install.log" 2>&1; then
    pass "install.sh (the CLI)"
else
    fail "install.sh: $(tail -n 5 "$work/install.log" | tr '\n' ' ')"
fi
if "$D$PREFIX/bin/extmerge" --version >/dev/null; then
    pass "install.sh: $PREFIX/bin/extmerge runs"
else
    fail "install.sh: $PREFIX/bin/extmerge does not run"
fi
check "install.sh: man page in $PREFIX/share/man/man8/extmerge.8" test -s "$D$PREFIX/share/man/man8/extmerge.8"
check "install.sh: completion in $PREFIX/share/bash-completion/completions/extmerge" \
    test -s "$D$PREFIX/share/bash-completion/completions/extmerge"
check "install.sh: extmerge-generator in $PREFIX/lib/systemd/system-generators links to $PREFIX/bin/extmerge" \
    test "$(readlink "$D$PREFIX/lib/systemd/system-generators/extmerge-generator")" = "$PREFIX/bin/extmerge"
check "install.sh: no systemd-sysext/systemd-confext without --systemd-names" \
    test ! -e "$D$PREFIX/bin/systemd-sysext" -a ! -e "$D$PREFIX/share/bash-completion/completions/systemd-sysext"
D2=$work/dest-names
if DESTDIR=$D2 bash install.sh --debug --no-build --systemd-names >"$work/install.log" 2>&1 &&
    [ "$(readlink "$D2$PREFIX/bin/systemd-sysext")" = extmerge ] &&
    [ "$(readlink "$D2$PREFIX/bin/systemd-confext")" = extmerge ] &&
    [ "$(readlink "$D2$PREFIX/share/bash-completion/completions/systemd-sysext")" = extmerge ] &&
    [ "$(readlink "$D2$PREFIX/share/bash-completion/completions/systemd-confext")" = extmerge ]; then
    pass "install.sh --systemd-names: systemd-sysext/-confext programs and completions link to extmerge"
else
    fail "install.sh --systemd-names: $(tail -n 3 "$work/install.log" | tr '\n' ' ')"
fi

if DESTDIR=$D sh initrd-hooks/install.sh "$BI" >"$work/install.log" 2>&1; then
    pass "initrd-hooks/install.sh"
else
    fail "initrd-hooks/install.sh: $(tail -n 5 "$work/install.log" | tr '\n' ' ')"
fi
dracut_dir=$(pkg-config --variable=dracutmodulesdir dracut 2>/dev/null || true)
dracut_dir=${dracut_dir:-/usr/lib/dracut/modules.d}
m=$D$dracut_dir/90extmerge
if [ -f "$m/module-setup.sh" ] && [ -f "$m/extmerge-pre-pivot.sh" ] && [ -f "$m/extmerge-initrd.service" ]; then
    pass "dracut module in $dracut_dir/90extmerge (dracut's own directory, not under PREFIX)"
else
    fail "dracut module not in $dracut_dir/90extmerge: $(cd "$D" && find . -name module-setup.sh | tr '\n' ' ')"
fi
check "no dracut module under $PREFIX/lib/dracut (dracut does not look there)" test ! -e "$D$PREFIX/lib/dracut"
check "module-setup.sh knows where extmerge-initrd is ($PREFIX/bin: not on dracut's PATH)" \
    grep -qx "extmerge_initrd_installed=$PREFIX/bin/extmerge-initrd" "$m/module-setup.sh"
check "module-setup.sh is valid bash" bash -n "$m/module-setup.sh"
if [ -x "$D$PREFIX/bin/extmerge-initrd" ]; then
    pass "extmerge-initrd in $PREFIX/bin"
else
    fail "extmerge-initrd not in $PREFIX/bin"
fi
dropin=$D/usr/lib/mkosi-initrd/mkosi.conf.d/50-extmerge.conf
trees=$(sed -n 's/^ExtraTrees=//p' "$dropin" 2>/dev/null)
tree=${trees%%:*}
if [ "$trees" = "$PREFIX/lib/extmerge/initrd-tree:/" ]; then
    pass "mkosi-initrd drop-in in /usr/lib/mkosi-initrd names the installed tree: ExtraTrees=$trees"
else
    fail "mkosi-initrd drop-in ExtraTrees=[$trees] (file: $(cd "$D" && find . -name 50-extmerge.conf -path '*mkosi*' | tr '\n' ' '))"
fi
if [ -n "$tree" ] && [ -x "$D$tree/usr/bin/extmerge-initrd" ] &&
    [ -f "$D$tree/usr/lib/systemd/system/extmerge-initrd.service" ] &&
    [ -f "$D$tree/usr/lib/systemd/initrd-preset/50-extmerge.preset" ]; then
    pass "the tree ExtraTrees= names exists, with the binary, the unit and the preset"
else
    fail "the tree ExtraTrees= names ($tree) is not there or incomplete"
fi
check "initrd-hooks/install.sh: man page in $PREFIX/share/man/man8/extmerge-initrd.8" \
    test -s "$D$PREFIX/share/man/man8/extmerge-initrd.8"
check "initrd-hooks/install.sh: completion in $PREFIX/share/bash-completion/completions/extmerge-initrd" \
    test -s "$D$PREFIX/share/bash-completion/completions/extmerge-initrd"
# dracut builds an initrd with the module as installed (a private copy of dracut, as the
# boot tests use): it finds extmerge-initrd outside its PATH through the path install.sh
# wrote into module-setup.sh (here the DESTDIR one, since nothing is installed for real).
if [ -f /usr/lib/dracut/dracut-init.sh ] && command -v dracut >/dev/null; then
    cp -a /usr/lib/dracut "$work/dracut"
    cp -a "$m" "$work/dracut/modules.d/"
    sed -i "s|^extmerge_initrd_installed=.*|extmerge_initrd_installed=$D$PREFIX/bin/extmerge-initrd|" \
        "$work/dracut/modules.d/90extmerge/module-setup.sh"
    mkdir -p "$work/dracut.conf.d" "$work/dracut-tmp"
    if dracutbasedir=$work/dracut dracut --conf /dev/null --confdir "$work/dracut.conf.d" \
        --tmpdir "$work/dracut-tmp" --no-kernel --no-hostonly --no-hostonly-cmdline --no-compress \
        --nostrip --no-early-microcode --force -m "base extmerge" "$work/initrd.img" \
        >"$work/dracut.log" 2>&1 &&
        dracutbasedir=$work/dracut lsinitrd "$work/initrd.img" >"$work/lsinitrd.txt" 2>/dev/null &&
        grep -q ' usr/bin/extmerge-initrd$' "$work/lsinitrd.txt"; then
        pass "dracut -m 'base extmerge' puts $PREFIX/bin/extmerge-initrd into the initrd"
    else
        fail "dracut with the installed module: $(grep -i extmerge "$work/dracut.log" | tail -n 3 | tr '\n' ' ')"
    fi
else
    skip "dracut is not installed: the module is not tried with dracut (tests/deps.sh installs dracut-core)"
fi
D3=$work/dest-override
if DESTDIR=$D3 DRACUT_MODULES_DIR=/lib/dracut/modules.d MKOSI_INITRD_DIR=/etc/mkosi-initrd \
    sh initrd-hooks/install.sh "$BI" >"$work/install.log" 2>&1 &&
    [ -f "$D3/lib/dracut/modules.d/90extmerge/module-setup.sh" ] &&
    [ -f "$D3/etc/mkosi-initrd/mkosi.conf.d/50-extmerge.conf" ] &&
    [ ! -e "$D3/usr/lib/dracut" ] && [ ! -e "$D3/usr/lib/mkosi-initrd" ]; then
    pass "DRACUT_MODULES_DIR= and MKOSI_INITRD_DIR= override where the module and drop-in go"
else
    fail "DRACUT_MODULES_DIR=/MKOSI_INITRD_DIR= override: $(tail -n 3 "$work/install.log" | tr '\n' ' ')"
fi

if cargo build -p extmerge-capi >"$work/build.log" 2>&1 &&
    DESTDIR=$D bash capi/install.sh --debug --no-build >"$work/install.log" 2>&1; then
    pass "capi/install.sh"
else
    fail "capi/install.sh: $(tail -n 5 "$work/build.log" "$work/install.log" | tr '\n' ' ')"
fi
check "capi/install.sh: man page in $PREFIX/share/man/man3/libextmerge.3" \
    test -s "$D$PREFIX/share/man/man3/libextmerge.3"
for p in 8:extmerge 8:extmerge-initrd 3:libextmerge; do
    got=$(MANPATH=$D$PREFIX/share/man man -w "${p%%:*}" "${p#*:}" 2>/dev/null)
    check "man finds ${p#*:}(${p%%:*}) in the installed tree ($got)" \
        test "$got" = "$D$PREFIX/share/man/man${p%%:*}/${p#*:}.${p%%:*}"
done
unset PREFIX WITH_MAN

# Documentation= of the units: man: pages that exist (ours or the system's), no
# placeholder addresses.
bad=()
n=0
while IFS= read -r doc; do
    for d in $doc; do
        n=$((n + 1))
        case $d in
            man:*\(*\))
                name=${d#man:}
                name=${name%%(*}
                sec=${d##*(}
                sec=${sec%)}
                [ -f "man/$name.$sec.scd" ] || man -w "$sec" "$name" >/dev/null 2>&1 || bad+=("$d")
                ;;
            https://*.invalid/* | http://*.invalid/* | *example.*) bad+=("$d") ;;
            https://* | http://* | file:* | info:*) ;;
            *) bad+=("$d") ;;
        esac
    done
done < <(grep -rh '^Documentation=' initrd-hooks/systemd | sed 's/^Documentation=//')
check "Documentation= of the units under initrd-hooks/systemd point at real pages ($n)${bad[*]:+ (not: ${bad[*]})}" \
    test ${#bad[@]} = 0 -a "$n" -gt 0
check "extmerge-initrd.service: Documentation=man:extmerge-initrd(8)" \
    grep -qx 'Documentation=man:extmerge-initrd(8)' initrd-hooks/systemd/extmerge-initrd.service

# ------------------------------------------------------------------ completion
step "bash completion (completion/extmerge.bash)"
# Simulates a <TAB> at the end of each line given on stdin: COMP_WORDS split as bash
# splits them (at spaces and at '='), then the function `complete -p` names for the
# command. Prints "LINE => REPLY..." per line. $1: "bc" sources bash-completion first.
cat >"$work/complete.bash" <<'EOF'
if [ "$1" = bc ]; then
    . /usr/share/bash-completion/bash_completion || exit 1
fi
. "$2" || exit 1
while IFS= read -r line; do
    read -ra ws <<<"$line"
    [[ $line == *" " ]] && ws+=("")
    COMP_WORDS=()
    for w in "${ws[@]}"; do
        if [[ $w == -*=* ]]; then
            COMP_WORDS+=("${w%%=*}" "=")
            [[ -n ${w#*=} ]] && COMP_WORDS+=("${w#*=}")
        else
            COMP_WORDS+=("$w")
        fi
    done
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) COMP_LINE=$line COMP_POINT=${#line}
    spec=$(complete -p "${COMP_WORDS[0]}" 2>/dev/null) || { echo "$line => NO COMPLETION"; continue; }
    fn=${spec#*-F }
    fn=${fn%% *}
    COMPREPLY=()
    "$fn" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}" 2>/dev/null
    printf '%s => %s\n' "$line" "$(printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//')"
done
EOF
mkdir -p "$work/comp/dA" "$work/comp/dB" "$work/bin"
# The --help of extmerge invoked as systemd-sysext (a symlink, as installed by --systemd-names).
ln -s "$PWD/$B" "$work/bin/systemd-sysext"
shelp=$("$work/bin/systemd-sysext" --help)
touch "$work/comp/dfile"
cases=(
    "extmerge --mutable=|auto ephemeral ephemeral-import import no yes"
    "extmerge --mutable=ep|ephemeral ephemeral-import"
    "extmerge --mutable |auto ephemeral ephemeral-import import no yes"
    "extmerge me|merge"
    "extmerge |help list merge plan refresh status unmerge"
    "extmerge --cl|--class="
    "systemd-sysext --cl|"
    "systemd-confext --cl|"
    "systemd-sysext --class=|"
    "extmerge --class=|both confext sysext"
    "extmerge --class |both confext sysext"
    "extmerge --json=|off pretty short"
    "extmerge --noexec=|no yes"
    "extmerge --always-refresh=|no yes"
    "extmerge --always-refresh |help list merge plan refresh status unmerge"
    "extmerge --root=$work/comp/d|$work/comp/dA $work/comp/dB"
    "extmerge --root $work/comp/d|$work/comp/dA $work/comp/dB"
    "extmerge --root=$work/comp |help list merge plan refresh status unmerge"
    "extmerge merge --no-r|--no-reload"
    "extmerge merge |OPTIONS"
    "systemd-sysext re|refresh"
    "extmerge-initrd |initrd initrd-unmerge sysroot"
    "extmerge-initrd --sysroot=$work/comp/d|$work/comp/dA $work/comp/dB"
    "extmerge-initrd sysroot --s|--sysroot="
)
for mode in plain bc; do
    if [ "$mode" = bc ] && [ ! -f /usr/share/bash-completion/bash_completion ]; then
        fail "bash-completion is not installed: cannot test the completion with it"
        continue
    fi
    input=$(for c in "${cases[@]}"; do echo "${c%%|*}"; done
        echo "extmerge --"
        echo "systemd-sysext --"
        echo "extmerge-initrd -")
    out=$(bash --norc --noprofile "$work/complete.bash" "$mode" completion/extmerge.bash <<<"$input")
    label="completion ($([ "$mode" = bc ] && echo with bash-completion || echo plain bash))"
    for c in "${cases[@]}"; do
        line=${c%%|*} want=${c#*|}
        got=$(awk -v l="$line => " 'index($0, l) == 1 { print substr($0, length(l) + 1); exit }' <<<"$out")
        if [ "$want" = OPTIONS ]; then
            if [[ " $got " == *" --force "* && " $got " != *" merge "* ]]; then
                pass "$label: '$line<TAB>' offers options, no verb"
            else
                fail "$label: '$line<TAB>' offers [$got]"
            fi
        elif [ "$got" = "$want" ]; then
            pass "$label: '$line<TAB>' offers [$want]"
        else
            fail "$label: '$line<TAB>' offers [$got], want [$want]"
        fi
    done
    got=$(awk -v l="extmerge -- => " 'index($0, l) == 1 { print substr($0, length(l) + 1) }' <<<"$out")
    same_set "$label: 'extmerge --<TAB>' offers the long options of extmerge --help" \
        "$(tr ' ' '\n' <<<"$got" | sed 's/=$//' | sort -u)" "the completion" \
        "$(help_opts <<<"$help" | grep '^--')" "extmerge --help"
    got=$(awk -v l="systemd-sysext -- => " 'index($0, l) == 1 { print substr($0, length(l) + 1) }' <<<"$out")
    same_set "$label: 'systemd-sysext --<TAB>' offers the long options of systemd-sysext --help but --class" \
        "$(tr ' ' '\n' <<<"$got" | sed 's/=$//' | sort -u)" "the completion" \
        "$(help_opts <<<"$shelp" | grep '^--' | grep -vx -- --class)" "systemd-sysext --help"
    got=$(awk -v l="extmerge-initrd - => " 'index($0, l) == 1 { print substr($0, length(l) + 1) }' <<<"$out")
    same_set "$label: 'extmerge-initrd -<TAB>' offers the options of extmerge-initrd --help" \
        "$(tr ' ' '\n' <<<"$got" | sed 's/=$//' | sort -u)" "the completion" \
        "$(awk '/^Kernel command line:/ { exit } { print }' <<<"$ihelp" | help_opts)" "extmerge-initrd --help"
done

# bash-completion finds the installed files by command name ($XDG_DATA_DIRS: /usr/local/share
# first by default), for extmerge and extmerge-initrd, and with --systemd-names for
# systemd-sysext.
if [ -f /usr/share/bash-completion/bash_completion ]; then
    for c in "$D:extmerge" "$D:extmerge-initrd" "$D2:systemd-sysext" "$D2:systemd-confext"; do
        dest=${c%%:*} cmd=${c#*:}
        got=$(XDG_DATA_DIRS=$dest/usr/local/share:/usr/share BASH_COMPLETION_USER_DIR=$work/none \
            bash --norc --noprofile -c '. /usr/share/bash-completion/bash_completion
                complete -r "$1" 2>/dev/null; __load_completion "$1" && complete -p "$1"' _ "$cmd" 2>&1)
        case $got in
            *"-F _extmerge"*" $cmd") pass "bash-completion loads the installed completion for $cmd ($got)" ;;
            *) fail "bash-completion does not load the installed completion for $cmd: [$got]" ;;
        esac
    done
fi

finish
