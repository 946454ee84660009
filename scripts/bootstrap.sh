#!/usr/bin/env bash
# Install Earmark on a Debian / Raspberry Pi OS machine: system packages, then a
# virtualenv in .venv with the package and its extras.
#   bash scripts/bootstrap.sh            # device + cloud + a local broker: runs `earmark up`
#   bash scripts/bootstrap.sh device     # a speaker only: earmark[device]
#   bash scripts/bootstrap.sh dev        # a developer or CI: everything the tests need
# Idempotent: rerunning only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${1:-all}"
case "$profile" in
  device) extras="device" ;;
  all) extras="device,cloud" ;;
  dev) extras="device,cloud,dev" ;;
  *) echo "bootstrap.sh: unknown profile '$profile' (use all, device or dev)" >&2; exit 2 ;;
esac

python="${PYTHON:-python3}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

# portaudio19-dev + gcc: PyAudio builds against PortAudio. espeak-ng speaks the device's
# replies and makes the test speech, with sox. alsa-utils gives arecord for live raw input.
apt_packages=(portaudio19-dev gcc alsa-utils espeak-ng sox)
# mosquitto: the broker `earmark up` and the tests start on a loopback port of their own.
if [ "$profile" != device ]; then apt_packages+=(mosquitto mosquitto-clients); fi
# chromium: the companion app's browser tests (Playwright drives Debian's build; its own
# browser download cannot work offline).
# mtools + dosfstools build and edit the FAT images of the flashing tests; systemd gives
# systemd-analyze for the unit test; openssl makes the broker's test certificates.
# debootstrap + qemu-user-static + proot build and run the arm64 Raspberry Pi OS stand-in
# (scripts/pi_stand_in.py) without privileges or binfmt_misc.
# ffmpeg: Home Assistant converts every spoken reply for a satellite with it (the one
# end-to-end test that runs Home Assistant itself).
# postgresql: the store, registry and privacy tests run on PostgreSQL too (scripts/dev_postgres.sh).
# nginx: the companion app is tested behind a real reverse proxy (--trusted-proxy).
if [ "$profile" = dev ]; then apt_packages+=(chromium mtools dosfstools systemd openssl debootstrap qemu-user-static proot ffmpeg postgresql nginx); fi
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then apt_packages+=(python3-venv); fi
include_dir="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
if [ ! -f "$include_dir/Python.h" ]; then apt_packages+=(python3-dev); fi

missing=()
for pkg in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then missing+=("$pkg"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing system packages: ${missing[*]}"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then "$python" -m venv .venv; fi
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install --upgrade pip
if [ "$profile" = dev ] && .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
  # openWakeWord is the dev extra's reference. 0.6 pins tflite-runtime, which has no wheel
  # past 3.11; LiteRT replaces it (firmware/litert_shim.py), so install it without deps.
  "${pip[@]}" install --no-deps openwakeword==0.6.0
fi
"${pip[@]}" install -e ".[$extras]"
if [ "$profile" = dev ]; then
  # Home Assistant itself, for the end-to-end test with its own wyoming integration. Its own
  # venv: its pins (aiohttp, pydantic 1, wyoming 1.5) are not Earmark's. Reinstalled only
  # when the frozen list changes.
  lock=tests/homeassistant/requirements.txt
  lock_sha="$(sha256sum "$lock" | cut -d' ' -f1)"
  if [ "$(cat .venv-ha/.lock-sha 2>/dev/null)" != "$lock_sha" ]; then
    echo "bootstrap: installing Home Assistant for the tests into .venv-ha (about a minute)"
    rm -rf .venv-ha
    "$python" -m venv .venv-ha
    .venv-ha/bin/python -m pip --disable-pip-version-check install -r "$lock"
    echo "$lock_sha" > .venv-ha/.lock-sha
  fi
fi
if [ "$profile" = dev ]; then bash scripts/dev_postgres.sh; fi
if [ "$profile" = all ] && [ -z "$(.venv/bin/earmark models list 2>/dev/null)" ]; then
  # The English recognizer is fetched here, never at run time; offline this only warns.
  .venv/bin/earmark models fetch-default || echo "bootstrap: could not fetch the English Vosk model; earmark up stores clips without transcripts until you do"
fi
echo "bootstrap: ready (.venv, extras: $extras)"
