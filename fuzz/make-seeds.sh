#!/usr/bin/env bash
# Regenerates the seed corpora in fuzz/corpus/<target>/seed-* from the project's unit-test
# inputs and from images made with the real tools (sfdisk, fdisk, mkfs.erofs, mksquashfs,
# mkfs.ext4, veritysetup). Binary seeds are cut to what the parser looks at, so the whole
# corpus stays small (well under 2 MiB).
#
# Usage: fuzz/make-seeds.sh            (needs fdisk, erofs-utils, squashfs-tools,
#                                       e2fsprogs, cryptsetup-bin; missing tools skip
#                                       their seeds with a note)
# UUIDs, salts and timestamps are fixed where the tools allow it, so a rerun gives the
# same bytes for most seeds (mksquashfs/mkfs.ext4 may still differ in a few fields).
set -euo pipefail
cd "$(dirname "$0")"
C=corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

have() {
    if command -v "$1" >/dev/null 2>&1; then return 0; fi
    echo "make-seeds: $1 not installed, skipping its seeds" >&2
    return 1
}

for t in env_file vpick image_name gpt fs_superblock verity_superblock verity_sig_json \
    image_policy metadata cmdline mountinfo hierarchies varlink; do
    mkdir -p "$C/$t"
    rm -f "$C/$t"/seed-*
done

# seed NAME TARGET: stdin becomes corpus/TARGET/seed-NAME.
seed() { cat >"$C/$2/seed-$1"; }

# ---- env_file: os-release / extension-release files ------------------------------------
for f in /etc/os-release /usr/lib/os-release /etc/initrd-release; do
    [ -f "$f" ] && seed "host-$(basename "$f")" env_file <"$f"
done
printf 'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\nID_LIKE='"'"'ubuntu'"'"'\n' |
    seed realistic env_file
printf 'ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\nSYSEXT_SCOPE="system initrd"\nEXTENSION_RELOAD_MANAGER=1\n' |
    seed ext-release-full env_file
printf 'ID=_any\n' | seed ext-any env_file
printf 'ID=fedora\nCONFEXT_LEVEL=2\nCONFEXT_SCOPE=\nARCHITECTURE=_any\n' | seed confext env_file
printf '# comment \\\n; other\n  A B = 1  2 \t\nQ="a\\"b\\\\c\\`d\\$e\\nf"\nS='"'"'x\ny'"'"'\nC="x" '"'"'y'"'"'z\nU=a\\\nb\nE=\nD=1\nD=2\nNOEQ\n==x\n' |
    seed syntax env_file
printf 'A=1\r\nB="2"\r\nC=3\rD=x\\ \nE="abc\ndef' | seed crlf-eof env_file
printf 'A="h\xc3\xa9llo \xe2\x9c\x93"\n# caf\xe9\nB=1\n' | seed utf8 env_file

# ---- vpick: directory listings, one name per line ---------------------------------------
printf 'foo_1.2.raw\nfoo_1.10.raw\n' | seed version vpick
printf 'foo_1.0.raw\nfoo_1.0~rc1.raw\nfoo_1.0-rc1.raw\n' | seed prerelease vpick
printf 'foo_1.0_arm64.raw\nfoo_0.9_x86-64.raw\nfoo_1.0_x86.raw\nfoo_1.0.raw\n' | seed arch vpick
printf 'foo_2.0+0.raw\nfoo_1.0.raw\nfoo_2.0+1-2.raw\nfoo_2.0+3.raw\nfoo_3+010-08.raw\nfoo_4+4294967296.raw\n' |
    seed tries vpick
printf '.\n..\nfoo_1.sysext.raw\n.foo_2.raw\nbar_9.raw\nfoo_.raw\nfoo_1_2_x86-64+1.raw\n' | seed misc vpick
printf '122.1\n123~rc1-1\n123\n123-a\n123-a.1\n123-1\n123-1.1\n123^post1\n123.a-1\n123.1-1\n123a-1\n124-1\n' |
    seed chain vpick
printf '~1\n\nab\nabb\nabc\n0001\n002\n12\n122\n122.9\n123~rc1\n123\n123-a\n123-a.1\n123-a1\n123-a1.1\n123-3\n123-3.1\n123^patch1\n123^1\n123.a-1\n123.1-1\n123a-1\n124\n' |
    seed systemd-list vpick
printf '1.0\n1.0,\n001\n1\n1.0\xc3\xa91\n1.0_1\n_0_\n0\n1.0^\n1.0~rc1~git123\n' | seed equal vpick

# ---- image_name -------------------------------------------------------------------------
i=0
for n in foo "a b" .foo "foo_1.2+3~x" .. ".#foo" "foo_1.2_x86-64" "foo+3" foo.raw \
    foo.sysext.raw "foo_1.confext.raw" _x "x.raw.raw" "$(printf 'tab\there')" \
    "$(printf 'caf\xc3\xa9_1+2.raw')"; do
    i=$((i + 1))
    printf '%s' "$n" | seed "$i" image_name
done

# ---- image_policy -----------------------------------------------------------------------
i=0
for p in '*' '-' '~' '' 'root=signed+absent:usr=signed+absent' \
    'root=verity+read-only-on:=unprotected+absent' \
    'usr=verity+read-only-on:root=encrypted:swap=encrypted' \
    'root=encrypted+read-only-off:srv=encrypted+absent:swap=absent' \
    'root=unprotected+encrypted:swap=absent+unused:=unprotected+encrypted+absent' \
    'root=read-only-on+read-only-off' 'root=:=open' 'home=ext4+xfs+growfs-on:=absent' \
    'root-verity=open:usr-verity-sig=ignore:=' \
    '=verity+signed+encrypted+encryptedwithintegrity+unprotected+unused+absent' \
    'roots=signed:root=signed+bogus:=open' ' root = signed + absent : usr=verity\:x' \
    'esp=vfat+btrfs+erofs+squashfs+f2fs:xbootldr=open:tmp=ignore:var=growfs-off'; do
    i=$((i + 1))
    printf '%s' "$p" | seed "$i" image_policy
done

# ---- metadata (dev file, work_dir file) -------------------------------------------------
printf '259:3\n' | seed dev metadata
printf '7:0' | seed dev-short metadata
printf '4095:1048575\n' | seed dev-max metadata
printf '/var/lib/extensions.mutable/.systemd-usr-workdir' | seed workdir metadata
printf '/a\\\\b\\"c\\n\\t\\x7f\\xc3\\xa9 d' | seed escaped metadata
printf '/caf\xc3\xa9/\ttab\x01' | seed raw metadata

# ---- cmdline: kernel command lines (and fstab texts, the same target reads both) --------
printf 'BOOT_IMAGE=/vmlinuz-6.1.0-13-amd64 root=UUID=0123 ro quiet\n' | seed plain cmdline
printf 'root=/dev/vda extmerge=0 extmerge.fatal=1 extmerge.debug systemd.sysext=no rd.systemd.confext=0\n' |
    seed switches cmdline
printf 'foo="bar extmerge=0" systemd.sysext="0" '"'"'x y'"'"' a"b c"d "" extmerge.debug=yes\n' |
    seed quotes cmdline
printf 'extmerge=bogus systemd.confext extmerge.fatal=ON\textmerge=1\r\nlabel=\xff\xfe "unbalanced extmerge=0' |
    seed odd cmdline
printf '# /etc/fstab\nUUID=1 / ext4 defaults 0 1\n/dev/vdb /var ext4 defaults 0 2\n/dev/vdc /var/lib\\040x xfs x-initrd.mount 0 0\n  \n/dev/vdd /variant ext4 defaults\n' |
    seed fstab cmdline

# ---- mountinfo: /proc/self/mountinfo texts ----------------------------------------------
mi() { printf '%s\n' "$@"; }
mi '22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw' \
    '23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw' \
    '30 22 0:30 / /usr ro,nodev,relatime shared:20 - overlay sysext ro,lowerdir=/run/x/a:/run/x/b' \
    '31 22 252:2 / /usr/local rw,relatime shared:21 - ext4 /dev/vdb rw' \
    '32 31 0:32 / /usr/local/cache rw shared:22 - tmpfs tmpfs rw' \
    '33 30 0:33 / /usr/.systemd-sysext rw - tmpfs tmpfs rw' | seed merged mountinfo
mi '40 1 0:40 / / rw - tmpfs tmpfs rw' \
    '41 40 0:41 / /run/media/user/My\040Disk rw - vfat /dev/sdb1 rw' \
    '42 40 0:42 / /tmp/a\011b\012c\134d rw - tmpfs tmpfs rw' \
    "$(printf '43 40 0:43 / /tmp/caf\xe9\xff rw - tmpfs tmpfs rw')" \
    '44 40 0:44 /sub /etc/x\400\777 rw - tmpfs tmpfs rw' | seed escapes mountinfo
mi '1 2' '' 'x y z w v' '18446744073709551615 18446744073709551616 0:0 / /usr' \
    '5 0 0:1 / /usr rw' '6 5 0:2 / /usr/a rw' '7 5 0:3 / /usr/a/b rw' '8 5 0:4 / /usr rw' | seed odd mountinfo

# ---- hierarchies: hierarchy lists (one per line, or colon-separated) and option strings
printf '/usr\n/opt' | seed default hierarchies
printf '/usr:/opt:/etc' | seed env hierarchies
printf '/usr:/usr/:/usr//lib:/./usr:/usr/..:/a.b:/a/b:relative::/' | seed overlap hierarchies
printf '/usr/lib\n/usr' | seed nested hierarchies
printf '/srv/caf\xc3\xa9\n/a b\n/x.y/z' | seed names hierarchies
for m in auto import ephemeral ephemeral-import yes no TRUE 0 1 On off f y bogus; do
    printf '%s' "$m" | seed "mode-$m" hierarchies
done

# ---- gpt --------------------------------------------------------------------------------
ROOT=4f68bce3-e8cd-4db1-96e7-fbcaf984b709
ROOT_V=2c7357ed-ebd2-46d9-aec1-23d437ec2bf5
ROOT_VS=41092b05-9fc8-4523-994f-2def0408b176
USR=8484680c-9521-48c6-9c11-b0720656f69e
USR_V=77ff5f63-e7b6-4633-acf4-1565b864c0e6
USR_VS=e7bb33fb-06cf-4e81-8273-e543b413e2e2
ROOT_X86=44479540-f297-41b2-9af7-d131d5f0458a
USR_X86=75250d76-8cc6-458e-bd66-bd47cc81a812
ROOT_ARM64=b921b045-1df0-41c3-af44-4c6f280d3fae
GENERIC=0fc63daf-8483-4772-8e79-3d69d8477de4
ESP=c12a7328-f81f-11d2-ba4b-00a0c93ec93b

# gpt_image NAME SIZE SCRIPT-LINES...: a whole small image (a 4-entry table, so the
# seed is a few KiB and still parses).
gpt_image() {
    local name=$1 size=$2
    shift 2
    local img="$work/$name.img"
    rm -f "$img"
    truncate -s "$size" "$img"
    {
        printf 'label: gpt\nlabel-id: 01234567-89AB-CDEF-0123-456789ABCDEF\n'
        printf '%s\n' "$@"
    } | sfdisk --no-reread --no-tell-kernel --quiet "$img" >/dev/null
    cp "$img" "$C/gpt/seed-$name"
}
u() { printf 'uuid=00000000-0000-4000-8000-%012d' "$1"; }
if have sfdisk; then
    gpt_image root-verity-sig 24K 'table-length: 4' 'first-lba: 3' \
        "start=3, size=8, type=$ROOT, $(u 1), name=\"root\", attrs=\"GUID:60\"" \
        "start=11, size=4, type=$ROOT_V, $(u 2), name=\"root-verity\"" \
        "start=15, size=2, type=$ROOT_VS, $(u 3), name=\"root-verity-sig\""
    gpt_image usr-verity-sig 24K 'table-length: 4' 'first-lba: 3' \
        "start=3, size=8, type=$USR, $(u 1), name=\"usr-ext_1.2\"" \
        "start=11, size=4, type=$USR_V, $(u 2), name=\"usr-ext_1.2-verity\"" \
        "start=15, size=2, type=$USR_VS, $(u 3), name=\"usr-ext_1.2-verity-sig\""
    gpt_image root-usr-secondary 24K 'table-length: 4' 'first-lba: 3' \
        "start=3, size=4, type=$ROOT_X86, $(u 1), name=\"root-x86\"" \
        "start=7, size=4, type=$USR_X86, $(u 2), name=\"usr-x86\"" \
        "start=11, size=4, type=$ROOT_ARM64, $(u 3), name=\"root-arm64\"" \
        "start=15, size=2, type=$ESP, $(u 4), name=\"esp\""
    gpt_image generic-no-auto 24K 'table-length: 4' 'first-lba: 3' \
        "start=3, size=8, type=$GENERIC, $(u 1), name=\"\\xc3\\xbcber \\xf0\\x9f\\xa6\\x80\"" \
        "start=11, size=4, type=$ROOT, $(u 2), name=\"no-auto\", attrs=\"GUID:63\""
    gpt_image two-roots 24K 'table-length: 4' 'first-lba: 3' \
        "start=3, size=4, type=$ROOT, $(u 1)" "start=7, size=4, type=$ROOT, $(u 2)"
    # The usual layout (128 entries, 1 MiB alignment) on a 4 MiB file, truncated to the
    # primary table and a little of the first partition: parse refuses it (the header
    # reaches beyond the end), which is a path worth fuzzing too.
    img="$work/big.img"
    truncate -s 4M "$img"
    printf 'label: gpt\nlabel-id: 01234567-89AB-CDEF-0123-456789ABCDEF\nstart=2048, size=2048, type=%s, %s, name="root"\nsize=1024, type=%s, %s\n' \
        "$ROOT" "$(u 1)" "$ROOT_V" "$(u 2)" |
        sfdisk --no-reread --no-tell-kernel --quiet "$img" >/dev/null
    head -c $((34 * 512 + 4096)) "$img" | seed truncated-4m gpt
fi
if have fdisk; then
    # 4096-byte logical sectors (sfdisk ignores sector-size for files; fdisk -b honours it).
    img="$work/4k.img"
    truncate -s 96K "$img"
    printf 'g\nn\n1\n6\n15\nt\n%s\nw\n' "$ROOT" | fdisk -b 4096 "$img" >/dev/null 2>&1 || true
    cp "$img" "$C/gpt/seed-4k-sectors"
fi

# ---- fs_superblock: the first 64 KiB of real file systems -------------------------------
tree="$work/tree"
mkdir -p "$tree/usr/lib/extension-release.d" "$tree/usr/bin"
printf 'ID=_any\n' >"$tree/usr/lib/extension-release.d/extension-release.ext"
printf 'hello\n' >"$tree/usr/bin/hello"
ln -s hello "$tree/usr/bin/hi"
fs_seed() { head -c 65536 "$2" | seed "$1" fs_superblock; }
if have mkfs.erofs; then
    mkfs.erofs --quiet -T0 -U 00000000-0000-4000-8000-000000000001 "$work/a.erofs" "$tree" >/dev/null 2>&1 &&
        fs_seed erofs "$work/a.erofs"
    mkfs.erofs --quiet -T0 -zlz4hc -U 00000000-0000-4000-8000-000000000001 "$work/b.erofs" "$tree" \
        >/dev/null 2>&1 && fs_seed erofs-lz4hc "$work/b.erofs"
fi
if have mksquashfs; then
    for comp in gzip zstd; do
        mksquashfs "$tree" "$work/$comp.sqfs" -noappend -quiet -no-progress -comp "$comp" \
            -all-time 0 -mkfs-time 0 >/dev/null 2>&1 && fs_seed "squashfs-$comp" "$work/$comp.sqfs"
    done
fi
if have mkfs.ext4; then
    export E2FSPROGS_FAKE_TIME=1 SOURCE_DATE_EPOCH=0
    for v in ext4 ext2; do
        truncate -s 1M "$work/$v.img"
        "mkfs.$v" -q -F -U 00000000-0000-4000-8000-000000000001 \
            -E hash_seed=00000000-0000-4000-8000-000000000002 -d "$tree" "$work/$v.img" \
            >/dev/null 2>&1 && fs_seed "$v" "$work/$v.img"
    done
    # ext4 without metadata_csum and with 4 KiB blocks.
    truncate -s 2M "$work/ext4b.img"
    mkfs.ext4 -q -F -b 4096 -O ^metadata_csum,^has_journal -U 00000000-0000-4000-8000-000000000001 \
        -E hash_seed=00000000-0000-4000-8000-000000000002 "$work/ext4b.img" >/dev/null 2>&1 &&
        fs_seed ext4-4k-nocsum "$work/ext4b.img"
fi

# ---- verity_superblock and verity_sig_json ----------------------------------------------
if have veritysetup; then
    head -c 65536 /dev/zero >"$work/data"
    for v in "sha256 1" "sha1 0" "sha512 1"; do
        set -- $v
        salt=$([ "$1" = sha1 ] && echo - || echo 0123456789abcdef0123456789abcdef)
        rh=$(veritysetup format "$work/data" "$work/hash-$1" --hash "$1" --format "$2" \
            --salt "$salt" --uuid 00000000-0000-4000-8000-000000000001 |
            sed -n 's/^Root hash:[[:space:]]*//p')
        head -c 512 "$work/hash-$1" | seed "$1" verity_superblock
        # Sidecar root hash after the superblock bytes (the target reads both).
        { head -c 512 "$work/hash-$1"; printf '%s\n' "$rh"; } | seed "$1-roothash" verity_superblock
        [ "$1" = sha256 ] && root_hash=$rh
    done
    # 4 KiB data blocks, 1 KiB hash blocks, many data blocks.
    head -c $((1 << 20)) /dev/zero >"$work/data1m"
    veritysetup format "$work/data1m" "$work/hash-1k" --hash-block-size 1024 \
        --salt 00 --uuid 00000000-0000-4000-8000-000000000001 >/dev/null
    head -c 512 "$work/hash-1k" | seed hash-1k verity_superblock
else
    root_hash=6a0f0c9ed1e5d3e7c9c6a1d9a06a2b1c7a0e2c1d3b4f5a6978695a4b3c2d1e0f
fi
sig=$(printf 'not a real PKCS#7 signature, only bytes to decode' | base64 -w0)
fp=$(printf 'fingerprint' | sha256sum | cut -d' ' -f1)
printf '{"rootHash":"%s","certificateFingerprint":"%s","signature":"%s"}' "$root_hash" "$fp" "$sig" |
    seed basic verity_sig_json
{
    printf '{"rootHash":"%s","signature":"%s","extra":[1,2.5e3,true,null,{"a":"\\u00e9"}]}' \
        "$root_hash" "$sig"
    head -c 512 /dev/zero
} | seed nul-padded verity_sig_json
printf ' {\n  "signature" : "%s",\n  "rootHash" : "%s", "\\ud83d\\ude00": "\\"\\\\\\/\\b\\f\\r\\t" }\t' \
    "$sig" "$(echo "$root_hash" | tr a-f A-F)" | seed whitespace verity_sig_json
printf '{"rootHash":1,"signature":"%s"}' "$sig" | seed not-a-string verity_sig_json

# ---- varlink: calls as systemd 262's varlinkctl and sysupdate send them ------------------
printf '{"method":"io.systemd.sysext.List","parameters":{},"more":true}\0' | seed list varlink
printf '{"method":"org.varlink.service.GetInfo"}\0{"method":"io.systemd.sysext.Merge","parameters":{"class":"confext","force":true,"noReload":false}}\0' |
    seed two-calls varlink
printf '{"method":"io.systemd.SysUpdate.Notify.OnCompletedUpdate","parameters":{"component":"os","version":null,"resources":[{"transfer":"t","path":"/x"}]},"oneway":true}\0' |
    seed notify varlink
printf '{"method":"a.B","parameters":{"x":[1,-2.5e3,{"y":"\\u00e9"}]}}\0{"meth' | seed partial varlink

echo "make-seeds: $(find "$C" -name 'seed-*' | wc -l) seeds, $(du -sk "$C" | cut -f1) KiB"
for t in "$C"/*/; do printf '  %-18s %s\n' "$(basename "$t")" "$(find "$t" -name 'seed-*' | wc -l)"; done
