#!/usr/bin/env bash
# Proves the README's two set-up commands on a brand-new Debian 12 root, so that a package installed by hand on
# this machine cannot make them look complete. `.ci/run` calls it on every submission.
#
#   scripts/fresh-check.sh            as root; needs mmdebstrap (installed here when missing)
#
# What it does:
#   1. builds a Debian 12 root with `mmdebstrap --variant=apt bookworm` from the apt sources (and the apt
#      "Acquire::" options) this machine is configured with, read at run time: no mirror is named in the project
#      (the throw-away root's own apt configuration holds them, as any Debian install's does);
#   2. copies the working tree's files (tracked and untracked-but-not-ignored: no build/, no .venv/) into it, and
#      binds ../shared beside them read-only, as CI lays it out;
#   3. lends it what is the machine's and not the project's: the DNS resolver, the machine's TLS trust store (PyPI
#      is reached through this machine's certificate authority; PIP_CERT and friends point at the lent copy) and
#      the CUDA toolkit when the host has one, so the CUDA compile stays checked;
#   4. runs `bash scripts/main.sh` and then `bash scripts/test.sh` inside it, unchanged, with CI=true and
#      HALFSERVE_STRICT=1: a missing fixture or an uninstallable peer fails instead of skipping.
#
# Downloaded .deb files and pip wheels are kept between runs in $HALFSERVE_FRESH_CACHE (default
# /var/cache/halfserve-fresh-check): a cache only saves downloading, apt and pip still install exactly what the
# project's scripts name, so it cannot hide a missing install step.
#
# Environment: HALFSERVE_FRESH_DIR (work folder, default /var/tmp/halfserve-fresh-check), HALFSERVE_FRESH_KEEP=1
# keeps the root afterwards, HALFSERVE_BENCH_FLAGS (default: a small grid) goes to the main job's bench.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(realpath -m "${HALFSERVE_FRESH_DIR:-/var/tmp/halfserve-fresh-check}")  # canonical, as mountinfo has it
cache=${HALFSERVE_FRESH_CACHE:-/var/cache/halfserve-fresh-check}
root=$work/root
started=$(date +%s)
say() { echo "fresh-check: $* ($(( $(date +%s) - started )) s)"; }
fail() { echo "fresh-check: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (mmdebstrap, chroot and bind mounts need it)"
# Everything below runs in a private mount namespace: no mount made here propagates to the machine, and all of
# them vanish with this process, however it ends.
if [ -z "${HALFSERVE_FRESH_PRIVATE_MOUNTS:-}" ]; then
  exec env HALFSERVE_FRESH_PRIVATE_MOUNTS=1 unshare --mount --propagation private bash "$0" "$@"
fi

# ---- mounts: every one is recorded, and the root is deleted only when none is left inside it ----------------------
mounted=()
mount_into() {  # mount_into TARGET MOUNT-ARGS...
  local target=$1
  shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounted+=("$target")
}
mounts_under() { awk -v prefix="$1/" 'index($5 "/", prefix) == 1 { print $5 }' /proc/self/mountinfo; }
unmount_all() {
  local i
  for (( i = ${#mounted[@]} - 1; i >= 0; i-- )); do umount -R "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}" || true; done
  mounted=()
}
remove_root() {
  [ -e "$root" ] || return 0
  if [ -n "$(mounts_under "$root")" ]; then
    echo "fresh-check: not deleting $root: still mounted inside it:" >&2
    mounts_under "$root" >&2
    return 1
  fi
  rm -rf --one-file-system "$root"
}
finish() {
  local status=$?
  unmount_all
  if [ "${HALFSERVE_FRESH_KEEP:-0}" = 1 ]; then echo "fresh-check: root kept at $root"; else remove_root || status=1; fi
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

# A root left by an interrupted run: unmount what it left, then start clean.
for target in $(mounts_under "$root" | sort -r); do umount -l "$target" || true; done
remove_root || fail "cannot remove the previous root $root"
mkdir -p "$work" "$cache/apt/partial" "$cache/pip"

# ---- 1. the root ----------------------------------------------------------------------------------------------------
if ! command -v mmdebstrap > /dev/null; then
  say "installing mmdebstrap on this machine (the check's own tool, not the project's)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap > /dev/null
fi
sources=()
if grep -qsE '^[[:space:]]*deb' /etc/apt/sources.list; then sources+=(/etc/apt/sources.list); fi
for file in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$file" ] && sources+=("$file")
done
[ ${#sources[@]} -gt 0 ] || fail "this machine has no apt sources to build the root from"
apt_options=()
for file in /etc/apt/apt.conf.d/*; do
  grep -qs '^[[:space:]]*Acquire::' "$file" && apt_options+=(--aptopt="$file")
done
say "building a fresh Debian 12 root in $root (mmdebstrap --variant=apt bookworm, ${#sources[@]} apt source file(s) of this machine)"
mmdebstrap --quiet --variant=apt "${apt_options[@]}" bookworm "$root" "${sources[@]}"
say "root built: $(chroot "$root" dpkg-query -W -f='${Package}\n' | wc -l) packages, $(cat "$root/etc/debian_version")"
# The root is a mount point of its own, as / is on a real machine: buildah (the container image test) makes "/" a
# private mount in its own namespace before unpacking a layer, which fails (EINVAL) on a plain directory.
mount_into "$root" --bind "$root"

# ---- 2. the project and shared/ -------------------------------------------------------------------------------------
project=$root/work/halfserve
mkdir -p "$project"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' file; do if [ -e "$file" ] || [ -L "$file" ]; then printf '%s\0' "$file"; fi; done |
  tar --null -T - -cf -) |
  tar -xf - -C "$project"
say "copied $(find "$project" -type f | wc -l) files of the working tree to /work/halfserve"
if [ -d "$repo/../shared" ]; then
  mount_into "$root/work/shared" --bind -o ro "$repo/../shared"
  mount -o remount,bind,ro "$root/work/shared"
else
  say "no ../shared beside the repository: the fixture tests will fail under HALFSERVE_STRICT"
fi

# ---- 3. what the machine lends --------------------------------------------------------------------------------------
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
trust=/etc/halfserve-fresh-check/ca-certificates.crt
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$root$(dirname "$trust")"
  cp -L /etc/ssl/certs/ca-certificates.crt "$root$trust"
fi
if [ -e /usr/local/cuda ]; then
  toolkit=$(readlink -f /usr/local/cuda)
  mount_into "$root$toolkit" --bind -o ro "$toolkit"
  # The toolkit's links in /usr/local (cuda, lib64, nvvm, targets) point into it; FindCUDAToolkit needs them all.
  for link in /usr/local/*; do
    # Linked to the resolved target: a link through /etc/alternatives would dangle inside the root.
    if [ -L "$link" ] && [[ "$(readlink -f "$link")" == "$toolkit"* ]]; then ln -sfn "$(readlink -f "$link")" "$root$link"; fi
  done
  say "lent the CUDA toolkit at $toolkit"
fi
mount_into "$root/proc" -t proc proc
mount_into "$root/sys" --rbind /sys
mount --make-rslave "$root/sys"
mount_into "$root/dev" --rbind /dev
mount --make-rslave "$root/dev"
mount_into "$root/dev/shm" -t tmpfs -o mode=1777 tmpfs
mount_into "$root/var/cache/apt/archives" --bind "$cache/apt"
mount_into "$root/var/cache/pip" --bind "$cache/pip"

# ---- 4. the README's two commands -----------------------------------------------------------------------------------
environment=(
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb
  CI=true HALFSERVE_STRICT=1 PIP_CACHE_DIR=/var/cache/pip
  "HALFSERVE_BENCH_FLAGS=${HALFSERVE_BENCH_FLAGS:---lengths 64 --batches 1,8 --seconds-per-cell 0.2}"
)
# The machine's pip settings (timeouts and the like) travel; its trust store is the lent copy.
while IFS='=' read -r name value; do
  case $name in PIP_CERT|PIP_CACHE_DIR|PIP_FIND_LINKS) ;; PIP_*) environment+=("$name=$value") ;; esac
done < <(env)
if [ -f "$root$trust" ]; then
  environment+=("PIP_CERT=$trust" "SSL_CERT_FILE=$trust" "REQUESTS_CA_BUNDLE=$trust" "CURL_CA_BUNDLE=$trust")
fi
in_root() { env -i "${environment[@]}" chroot "$root" /bin/bash -c "cd /work/halfserve && $1"; }

say "README command one, inside the fresh root: bash scripts/main.sh"
in_root "bash scripts/main.sh"
say "README command two, inside the fresh root: bash scripts/test.sh"
in_root "bash scripts/test.sh"
say "both README commands passed on a fresh Debian 12 root"
