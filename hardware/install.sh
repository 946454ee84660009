#!/usr/bin/env bash
# Install Earmark on a Raspberry Pi (run as root; cloud-init runs it at first boot).
#   EARMARK_AUDIO=usb|respeaker-2mic-v1|respeaker-2mic-v2   (default usb)
# Reads what earmark flash left in /boot/firmware/earmark: an earmark wheel, device.toml,
# credentials.env, optional ca.pem. Idempotent: safe to run again after an update.
set -euo pipefail
boot=/boot/firmware/earmark
audio="${EARMARK_AUDIO:-usb}"
venv=/opt/earmark/.venv

# Secrets leave the FAT partition (readable by anyone who holds the card) before
# anything that can fail: apt-get with no network at first boot used to stop the script
# with the broker password and the Wi-Fi password still on the card.
install -d -m 0750 /etc/earmark
if [ -f "$boot/credentials.env" ]; then
  # Root reads it for systemd (EnvironmentFile).
  install -m 0600 "$boot/credentials.env" /etc/earmark/credentials.env
  shred -u "$boot/credentials.env"
fi
# cloud-init has applied network-config before its runcmd runs this script, and applies
# it once per instance, so the Wi-Fi password in it is no longer needed there.
if [ -f /boot/firmware/network-config ] && grep -q '^ *password:' /boot/firmware/network-config; then
  sed -i '/^ *password:/d' /boot/firmware/network-config
fi
echo "install.sh: secrets moved off the boot partition"

echo "install.sh: apt-get update, then Debian's packages (a few minutes at first boot)"
apt-get update
# Debian's PyAudio, not pip's: pip would compile it, which needs gcc and headers and
# takes minutes on a Pi Zero. The venv sees it through --system-site-packages.
# espeak-ng speaks the replies (the embedded default voice).
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
  python3-venv python3-pyaudio alsa-utils espeak-ng

id earmark >/dev/null 2>&1 || useradd --system --home-dir /var/lib/earmark --shell /usr/sbin/nologin earmark
usermod -aG audio,gpio earmark

install -d -m 0755 /opt/earmark
[ -x "$venv/bin/python" ] || python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install --upgrade pip
wheels=("$boot"/earmark-*.whl)
[ -f "${wheels[0]}" ] || { echo "install.sh: no earmark wheel in $boot (earmark flash puts one there)" >&2; exit 2; }
echo "install.sh: installing Earmark and its Python packages (minutes on a Pi Zero)"
"$venv/bin/pip" install "earmark[device] @ file://${wheels[0]}"
# The first stage of two-stage wake detection reads microWakeWord's model files from
# pymicro-wakeword. Its 2.x (the device extra's on x86-64) has no arm64 wheel; 1.0.0 is a
# pure-Python wheel holding the same models (okay_nabu in an older version). The speaker
# only reads the files and never imports the package (which would want TensorFlow), so it
# goes in without its dependencies.
if ! "$venv/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('pymicro_wakeword') is None)"; then
  "$venv/bin/pip" install --no-deps "pymicro-wakeword==1.0.0" \
    || echo "install.sh: no microWakeWord models: the speaker detects its wake word with openWakeWord alone" >&2
fi

chgrp earmark /etc/earmark
install -m 0640 -g earmark "$boot/device.toml" /etc/earmark/device.toml
[ -f "$boot/ca.pem" ] && install -m 0644 "$boot/ca.pem" /etc/earmark/ca.pem
# The consent service's public key: the only signer whose consent messages the speaker believes.
[ -f "$boot/consent.pub" ] && install -m 0644 "$boot/consent.pub" /etc/earmark/consent.pub

# The HAT's card names (wm8960soundcard, seeed2micvoicec) are in hardware/alsa/*.conf.
case "$audio" in
  respeaker-2mic-v1) overlay="dtoverlay=wm8960-soundcard" ;;
  respeaker-2mic-v2) overlay="dtoverlay=respeaker-2mic-v2_0" ;;
  usb) overlay="" ;;
  *) echo "install.sh: unknown EARMARK_AUDIO=$audio" >&2; exit 2 ;;
esac
if [ -n "$overlay" ]; then
  grep -qx "$overlay" /boot/firmware/config.txt || printf '\n# Earmark microphone\ndtparam=i2s=on\n%s\n' "$overlay" >> /boot/firmware/config.txt
  # The HAT's three APA102 LEDs are on SPI0 (gpio.lights = "respeaker_2mic").
  grep -qx "dtparam=spi=on" /boot/firmware/config.txt || printf '# Earmark HAT LEDs\ndtparam=spi=on\n' >> /boot/firmware/config.txt
  if getent group spi >/dev/null; then usermod -aG spi earmark; fi
fi
install -m 0644 "$(dirname "$0")/alsa/asound-$audio.conf" /etc/asound.conf 2>/dev/null \
  || "$venv/bin/python" -c "import hardware, shutil, pathlib; shutil.copy(pathlib.Path(hardware.__file__).parent / 'alsa' / 'asound-$audio.conf', '/etc/asound.conf')"

unit=/etc/systemd/system/earmark-speaker.service
"$venv/bin/python" -c "import hardware, pathlib; print((pathlib.Path(hardware.__file__).parent / 'systemd' / 'earmark-speaker.service').read_text())" \
  | sed "s|/opt/earmark/.venv/bin/earmark-speaker|$venv/bin/earmark-speaker|" > "$unit"
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now earmark-speaker.service
  echo "install.sh: earmark-speaker is running; check it with: $venv/bin/earmark device doctor --config /etc/earmark/device.toml"
else
  # Not booted with systemd (an image being built, a chroot): enabled, it starts at boot.
  systemctl enable earmark-speaker.service
  echo "install.sh: earmark-speaker is enabled and starts at the next boot"
fi
