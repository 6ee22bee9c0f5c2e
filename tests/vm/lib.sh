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
    if [[ -n ${CI:-} ]]; then
        echo "FAIL: $why (install them with tests/deps.sh)"
        echo "0 passed, 1 failed"
        exit 1
    fi
    echo "SKIP: $why (install them with tests/deps.sh; with CI set this fails)"
    exit 0
}
