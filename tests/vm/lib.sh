# Sourced by the scripts that run tests in a VM: where the runner is, and what happens
# when it cannot run here. With CI set a VM group that cannot run fails; elsewhere it
# says SKIP and why (a developer without qemu can still run the rest).
VM_RUN=${VM_RUN:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/vm-run}

# vm_require TOOL...: exits (77→SKIP or failure) unless the runner and the tools are there.
vm_require() {
    local rc=0 t why=""
    bash "$VM_RUN" --check || rc=$?
    ((rc == 0)) || why="the VM runner's prerequisites are missing (status $rc)"
    for t in "$@"; do
        command -v "$t" >/dev/null || why+="${why:+; }$t is missing"
    done
    [[ -n $why ]] || return 0
    vm_skip "$why"
}

# vm_skip WHY: a prerequisite is missing: SKIP and exit 0, or (with CI set) fail.
vm_skip() {
    if [[ -n ${CI:-} ]]; then
        echo "FAIL: $1 (install them with tests/deps.sh)"
        echo "0 passed, 1 failed"
        exit 1
    fi
    echo "SKIP: $1 (install them with tests/deps.sh; with CI set this fails)"
    exit 0
}

# vm_build_exe LOG KIND NAME CARGO-ARGS...: runs `cargo CARGO-ARGS --message-format=json`
# and prints the path of the executable it built for target NAME of KIND (test, bin);
# when there is none, shows the end of LOG (cargo's stderr) and returns 1.
vm_build_exe() {
    local log=$1 kind=$2 name=$3 exe
    shift 3
    exe=$(cargo "$@" --message-format=json 2>"$log" |
        grep -F "\"kind\":[\"$kind\"]" | grep -F "\"name\":\"$name\"" |
        grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n1) || true
    if [[ -z $exe || ! -x $exe ]]; then
        tail -n 30 "$log" >&2
        return 1
    fi
    echo "$exe"
}
