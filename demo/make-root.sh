#!/bin/sh
# Builds the demo root in $1: a Debian-like host with sysexts and confexts in the standard
# search paths, some compatible, some not (to show the reasons), one .v/ versioned dir.
set -eu
R=$1
rm -rf "$R"; mkdir -p "$R"
mk() { mkdir -p "$(dirname "$R/$1")"; printf '%s\n' "$2" > "$R/$1"; }

mk etc/os-release 'ID=debian
VERSION_ID=12
PRETTY_NAME="Demo host (Debian 12)"
SYSEXT_LEVEL=1.0'
mk usr/bin/host-tool 'host tool'
mk etc/motd 'host motd'
mkdir -p "$R/opt" "$R/var/lib/extensions" "$R/run/extensions" "$R/var/lib/confexts"

# A directory sysext that matches by SYSEXT_LEVEL.
E=var/lib/extensions/hello
mk $E/usr/lib/extension-release.d/extension-release.hello 'ID=debian
SYSEXT_LEVEL=1.0'
mk $E/usr/bin/hello '#!/bin/sh
echo "hello from a system extension"'
chmod +x "$R/$E/usr/bin/hello"
mk $E/opt/hello/README 'hello in /opt'

# A versioned sysext: tools.v/ holds two versions, the newer one is picked.
for v in 1.2 1.10; do
  E=var/lib/extensions/tools.v/tools_$v
  mk $E/usr/lib/extension-release.d/extension-release.tools "ID=_any"
  mk $E/usr/share/tools/version "$v"
done

# Incompatible: another distribution.
E=run/extensions/fedora-tools
mk $E/usr/lib/extension-release.d/extension-release.fedora-tools 'ID=fedora
VERSION_ID=40'
mk $E/usr/bin/fedora-tool 'x'

# Incompatible: only for the initrd.
E=var/lib/extensions/initrd-only
mk $E/usr/lib/extension-release.d/extension-release.initrd-only 'ID=debian
SYSEXT_LEVEL=1.0
SYSEXT_SCOPE=initrd'
mk $E/usr/bin/initrd-tool 'x'

# Not an extension at all.
mk var/lib/extensions/notes.txt 'not an image'

# A confext that overrides /etc/motd and adds a file.
E=var/lib/confexts/motd
mk $E/etc/extension-release.d/extension-release.motd 'ID=debian
VERSION_ID=12'
mk $E/etc/motd 'motd from a configuration extension'
mk $E/etc/demo.conf 'answer=42'
# A disk-image sysext: a bare erofs file system (as mkosi or systemd-repart make them,
# minus the GPT), when mkfs.erofs is installed.
if command -v mkfs.erofs >/dev/null 2>&1; then
    img=$(mktemp -d)
    mkdir -p "$img/usr/lib/extension-release.d" "$img/usr/share/fortune"
    printf 'ID=debian\nSYSEXT_LEVEL=1.0\n' > "$img/usr/lib/extension-release.d/extension-release.fortune"
    echo "A disk image merged from /var/lib/extensions/fortune.raw" > "$img/usr/share/fortune/today"
    mkfs.erofs --quiet "$R/var/lib/extensions/fortune.raw" "$img" >/dev/null
    rm -rf "$img"
fi
echo "$R"
