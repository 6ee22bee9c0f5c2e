#!/bin/bash
# make-verity-ddi.sh NAME OUT.raw WORKDIR
#
# Builds a verity-protected sysext DDI the way systemd-repart lays one out (the shell
# counterpart of tests/images/build.rs `ddi-verity-nosig`): a GPT with
#   1: usr-x86-64         (type 8484680c-…, SD_GPT_USR_X86_64), erofs
#   2: usr-x86-64-verity  (type 77ff5f63-…, SD_GPT_USR_X86_64_VERITY), `veritysetup format`
# 1 MiB aligned, partition UUIDs = first / last 128 bits of the root hash (repart's
# convention), no signature partition (Debian's kernel would refuse a test key's
# signature) unless DDI_SIGN_KEY is set (below).
# The usr partition carries usr/lib/extension-release.d/extension-release.NAME
# (ID=debian, SYSEXT_LEVEL=1.0) and usr/share/extmerge-test/ddi-sentinel.
#
# Prints the root hash (hex) on stdout. Only userspace tools: mkfs.erofs, veritysetup
# (no device is opened), sfdisk --no-reread --no-tell-kernel, dd conv=notrunc, openssl.
#
# Environment (all optional; tests/vm/run-signed-tests.sh uses them):
#   DDI_SIGN_KEY, DDI_SIGN_CERT  add a usr-x86-64-verity-sig partition (type e7bb33fb-…):
#                                JSON {"rootHash":…,"signature":…}, NUL-padded to 16 KiB, the
#                                signature as systemd-repart makes it (PKCS#7, DER, detached,
#                                no certificates or attributes) over the hex root hash
#   DDI_SIGN_OVER                sign this text instead of the root hash (a signature that
#                                does not cover the image; the JSON still names its hash)
#   DDI_BLOB_LINES               also usr/share/extmerge-test/blob.bin: that many lines
#                                "VERITY-BLOCK-XX" (for corruption tests)
#   DDI_SHARE_DIR                the directory below usr/share for the sentinel and blob
#                                (default extmerge-test; the boot tests' /.extra image
#                                uses another, so that two DDIs do not cover each other)
set -euo pipefail
name=${1:?name} out=${2:?out.raw} work=${3:?workdir}
share=${DDI_SHARE_DIR:-extmerge-test}
USR_TYPE=8484680c-9521-48c6-9c11-b0720656f69e
USR_VERITY_TYPE=77ff5f63-e7b6-4633-acf4-1565b864c0e6
USR_VERITY_SIG_TYPE=e7bb33fb-06cf-4e81-8273-e543b413e2e2
MIB=$((1 << 20))

rm -rf "$work"
mkdir -p "$work/usr/lib/extension-release.d" "$work/usr/share/$share"
# The usr partition's tree is /usr's contents (no usr/ prefix): systemd mounts it at usr/.
printf 'ID=debian\nSYSEXT_LEVEL=1.0\n' >"$work/usr/lib/extension-release.d/extension-release.$name"
echo "ddi-sentinel $name" >"$work/usr/share/$share/ddi-sentinel"
if [[ -n ${DDI_BLOB_LINES:-} ]]; then
    awk -v n="$DDI_BLOB_LINES" 'BEGIN { for (i = 0; i < n; i++) print "VERITY-BLOCK-XX" }' \
        >"$work/usr/share/$share/blob.bin"
fi
mkfs.erofs --quiet -T0 --all-root "$work/usr.erofs" "$work/usr" >&2
veritysetup format "$work/usr.erofs" "$work/usr.verity" >"$work/veritysetup.out"
rh=$(sed -n 's/^Root hash:[[:space:]]*//p' "$work/veritysetup.out")
[[ $rh =~ ^[0-9a-f]{64}$ ]] || { echo "no sha256 root hash in veritysetup output" >&2; exit 1; }
uuid() { echo "${1:0:8}-${1:8:4}-${1:12:4}-${1:16:4}-${1:20:12}"; }
parts=("usr.erofs:$USR_TYPE:usr-x86-64:$(uuid "${rh:0:32}")"
    "usr.verity:$USR_VERITY_TYPE:usr-x86-64-verity:$(uuid "${rh:32:32}")")
if [[ -n ${DDI_SIGN_KEY:-} ]]; then
    printf %s "${DDI_SIGN_OVER:-$rh}" |
        openssl smime -sign -nocerts -noattr -binary -md sha256 -inkey "$DDI_SIGN_KEY" \
            -signer "${DDI_SIGN_CERT:?DDI_SIGN_CERT}" -outform der -out "$work/usr.p7s"
    printf '{"rootHash":"%s","signature":"%s"}\n' "$rh" "$(base64 -w0 "$work/usr.p7s")" >"$work/usr.sig"
    truncate -s 16K "$work/usr.sig"
    parts+=("usr.sig:$USR_VERITY_SIG_TYPE:usr-x86-64-verity-sig:$(uuid "$(sha256sum <"$work/usr.sig")")")
fi

# Layout as build.rs gpt_image: each partition its data rounded up to 4 KiB (at least
# 16 KiB), starting 1 MiB aligned; 1 MiB free at the end for the backup GPT.
script="label: gpt
unit: sectors
first-lba: 2048
"
next=$MIB
declare -a offs=()
for spec in "${parts[@]}"; do
    IFS=: read -r f type label puuid <<<"$spec"
    size=$(stat -c %s "$work/$f")
    ((size < 16384)) && size=16384
    size=$(((size + 4095) / 4096 * 4096))
    script+="start=$((next / 512)), size=$((size / 512)), type=$type, name=\"$label\", uuid=$puuid
"
    offs+=("$f:$next")
    next=$(((next + size + MIB - 1) / MIB * MIB))
done
rm -f "$out"
truncate -s $((next + MIB)) "$out"
sfdisk --no-reread --no-tell-kernel -q --wipe always "$out" <<<"$script" >&2
for o in "${offs[@]}"; do
    dd if="$work/${o%%:*}" of="$out" bs=4096 seek=$((${o#*:} / 4096)) conv=notrunc,sparse status=none
done
echo "$rh"
