#!/usr/bin/env bash
# Build an arm64 Debian root that stands in for Raspberry Pi OS, under qemu-user (no
# privileges, no binfmt_misc, no mounts). Called by scripts/pi_stand_in.py, which caches
# the result by a key over this file, so edit the package list here and nowhere else.
#   scripts/pi_stand_in_base.sh bookworm|trixie DEST
set -euo pipefail
release="$1"
dest="$2"
mirror="${EARMARK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What Raspberry Pi OS Lite has, or what install.sh installs itself (so its apt-get
# finds them present and the stand-in's first boot does not spend minutes emulating dpkg).
# systemd comes after debootstrap (see below).
packages=python3,python3-venv,python3-pyaudio,alsa-utils,ca-certificates,passwd,procps

in_root() {
  PROOT_NO_SECCOMP=1 proot -q qemu-aarch64-static -0 -r "$dest" -b /dev -b /sys -w / \
    /usr/bin/env -i PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
}

# Run as root, debootstrap's second stage really mounts /proc inside the root (proot
# passes mount(2) through). Never leave it mounted, and never rm -rf through it.
unmount() {
  local point
  for point in proc sys dev/pts dev; do
    if mountpoint -q "$dest/$point" 2>/dev/null; then umount -l "$dest/$point"; fi
  done
}
trap unmount EXIT
unmount
rm -rf "$dest"
mkdir -p "$dest"
echo "pi-stand-in: debootstrap $release arm64, first stage (minutes)"
debootstrap --foreign --arch=arm64 --variant=minbase --include="$packages" "$release" "$dest" "$mirror"
cp /etc/resolv.conf "$dest/etc/resolv.conf"
echo "pi-stand-in: second stage under qemu-aarch64 (minutes)"
in_root /bin/sh -c 'DEBOOTSTRAP_DIR=/debootstrap /debootstrap/debootstrap --second-stage'
unmount
# Trixie's ca-certificates rewrites the bundle at configure time; the host's is the one
# that lets pip reach the package registry through this machine's network.
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$dest/etc/ssl/certs/ca-certificates.crt"
cp /etc/resolv.conf "$dest/etc/resolv.conf"
# systemd-tmpfiles crashes proot (an assertion in its path translation), and systemd's
# postinst runs it. debootstrap's second stage resets PATH, so systemd is installed
# after it, with a no-op that maintainer scripts find first on PATH: a root that is
# never booted has no tmpfiles to create.
install -D -m 0755 /dev/stdin "$dest/usr/local/sbin/systemd-tmpfiles" <<'STUB'
#!/bin/sh
exit 0
STUB
echo "pi-stand-in: systemd (for systemctl enable and systemd-analyze)"
in_root apt-get update -qq
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
# Raspberry Pi OS has these; plain Debian does not.
in_root /bin/sh -c 'getent group gpio >/dev/null || groupadd --system gpio'
mkdir -p "$dest/boot/firmware"
printf '%s\n' '# Raspberry Pi OS default (abridged)' 'dtparam=audio=on' 'camera_auto_detect=1' \
  'display_auto_detect=1' 'auto_initramfs=1' 'dtoverlay=vc4-kms-v3d' 'arm_64bit=1' > "$dest/boot/firmware/config.txt"
in_root /usr/bin/apt-get clean
echo "pi-stand-in: base root ready in $dest"
