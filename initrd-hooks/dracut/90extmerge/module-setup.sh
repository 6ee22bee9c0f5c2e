#!/bin/bash
# dracut module: merge the real root's system and configuration extensions with
# extmerge-initrd before switch-root. systemd flow: extmerge-initrd.service;
# shell flow: a pre-pivot hook.
# shellcheck disable=SC2154 # moddir, initdir, systemdsystemunitdir come from dracut

# Where initrd-hooks/install.sh put extmerge-initrd (it rewrites this line): dracut
# searches binaries only on DRACUT_PATH (default /sbin /bin /usr/sbin /usr/bin), which
# has no /usr/local/bin for PREFIX=/usr/local.
extmerge_initrd_installed=/usr/bin/extmerge-initrd

# extmerge-initrd on dracut's PATH, else where install.sh put it.
extmerge_initrd_path() {
    command -v extmerge-initrd && return 0
    [ -x "$extmerge_initrd_installed" ] && echo "$extmerge_initrd_installed"
}

check() {
    [ -x "$extmerge_initrd_installed" ] || require_binaries extmerge-initrd || return 1
    # Only when asked for (--add extmerge or add_dracutmodules+=" extmerge ").
    return 255
}

depends() {
    # Not dracut's "dm" module: extmerge talks to device-mapper itself, and that
    # module's pre-udev hook costs seconds of boot time. The kernel modules suffice.
    return 0
}

installkernel() {
    hostonly='' instmods overlay loop dm-mod dm-verity erofs squashfs ext4
}

install() {
    local bin
    bin=$(extmerge_initrd_path) || return 1
    inst_binary "$bin" /usr/bin/extmerge-initrd
    if dracut_module_included "systemd"; then
        inst_simple "$moddir/extmerge-initrd.service" "$systemdsystemunitdir/extmerge-initrd.service"
        mkdir -p "$initdir$systemdsystemunitdir/initrd.target.wants"
        ln_r "$systemdsystemunitdir/extmerge-initrd.service" \
            "$systemdsystemunitdir/initrd.target.wants/extmerge-initrd.service"
        local u
        for u in sysext confext; do
            if [ -f "$moddir/systemd-$u-sysroot.service.d/50-extmerge.conf" ]; then
                inst_simple "$moddir/systemd-$u-sysroot.service.d/50-extmerge.conf" \
                    "$systemdsystemunitdir/systemd-$u-sysroot.service.d/50-extmerge.conf"
            fi
        done
    else
        inst_hook pre-pivot 60 "$moddir/extmerge-pre-pivot.sh"
    fi
}
