#!/usr/bin/env bash
# Builds the container image of `halfserve serve` (deploy/Containerfile) with buildah, with no container registry:
# the Debian 12 base both stages start from is made here from Debian packages.
#
#   scripts/image.sh [IMAGE]       as root; IMAGE defaults to localhost/halfserve:latest
#
#   1. base: `mmdebstrap --variant=apt bookworm` from this machine's apt sources and "Acquire::" options (as
#      scripts/fresh-check.sh does), packed as a tarball, cached in $HALFSERVE_IMAGE_CACHE (default build/image);
#      delete the tarball to refresh it. It becomes the local image localhost/halfserve-base:bookworm, made again
#      only when the tarball changes;
#   2. `buildah bud --isolation chroot --storage-driver vfs` of deploy/Containerfile on that base (chroot isolation
#      and vfs storage need neither cgroups, user namespaces nor overlay mounts, so it works in a chroot as CI runs),
#      skipped when the image was built from the same Containerfile, context files and base
#      (HALFSERVE_IMAGE_REBUILD=1 builds anyway).
# Prints the image's name and size. The image is in buildah's vfs storage: `buildah push --storage-driver vfs IMAGE
# oci-archive:halfserve.tar` exports it; docs/deploy.md ("The container image") says how to run it.
set -euo pipefail
if [ $# -gt 1 ] || [[ "${1:-}" == -* ]]; then
  echo "usage: scripts/image.sh [IMAGE]   (default localhost/halfserve:latest)" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
image=${1:-localhost/halfserve:latest}
cache=$(realpath -m "${HALFSERVE_IMAGE_CACHE:-build/image}")
base_image=localhost/halfserve-base:bookworm
tarball=$cache/debian-bookworm-base.tar
storage=(--storage-driver vfs)
started=$(date +%s)
say() { echo "image: $* ($(( $(date +%s) - started )) s)" >&2; }
fail() { echo "image: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (buildah's chroot isolation and mmdebstrap need it)"
for tool in buildah mmdebstrap; do
  command -v "$tool" > /dev/null || fail "$tool is missing (bash scripts/install-deps.sh --test installs it)"
done
mkdir -p "$cache"

# ---- 1. the base --------------------------------------------------------------------------------------------------
if [ ! -f "$tarball" ]; then
  sources=()
  if grep -qsE '^[[:space:]]*deb' /etc/apt/sources.list; then sources+=(/etc/apt/sources.list); fi
  for file in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] && sources+=("$file")
  done
  [ ${#sources[@]} -gt 0 ] || fail "this machine has no apt sources to build the base from"
  apt_options=()
  for file in /etc/apt/apt.conf.d/*; do
    grep -qs '^[[:space:]]*Acquire::' "$file" && apt_options+=(--aptopt="$file")
  done
  # dpkg leaves out documentation, manuals and translations, in the base and in every package the stages install
  # later (the options stay in the root's /etc/dpkg/dpkg.cfg.d/), as Debian's "slim" images do; unsafe-io: no
  # fsync per file, which a throw-away build root does not need (Docker's Debian images set it too).
  dpkg_options=(
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='force-unsafe-io'
  )
  say "making the Debian 12 base (mmdebstrap --variant=apt bookworm, ${#sources[@]} apt source file(s) of this machine)"
  partial=$(mktemp "$cache/.base.XXXXXX.tar")  # mmdebstrap picks the format from the .tar suffix
  trap 'rm -f "$partial"' EXIT
  # The merged-usr hook links /bin, /lib... into /usr itself: otherwise bookworm's essential set pulls in usrmerge,
  # and with it perl (50 MB of the image).
  if ! mmdebstrap --quiet --variant=apt --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
         "${dpkg_options[@]}" "${apt_options[@]}" bookworm "$partial" "${sources[@]}" > "$cache/base.log" 2>&1; then
    tail -n 40 "$cache/base.log" >&2
    fail "mmdebstrap failed (whole log: $cache/base.log)"
  fi
  chmod 644 "$partial"
  mv "$partial" "$tarball"
  trap - EXIT
fi
base_sum=$(sha256sum "$tarball" | cut -d' ' -f1)
imported_sum=$(buildah inspect "${storage[@]}" --type image --format '{{index .OCIv1.Config.Labels "halfserve.base-tarball-sha256"}}' \
  "$base_image" 2>/dev/null || true)
if [ "$imported_sum" != "$base_sum" ]; then
  say "importing the base tarball as $base_image"
  container=$(buildah from "${storage[@]}" scratch)
  trap 'buildah rm "${storage[@]}" "$container" > /dev/null 2>&1 || true' EXIT
  # Unpacked into the container's root rather than `buildah add`ed, to leave out /dev's device nodes (every runtime
  # mounts its own /dev) and keep numeric owners.
  root=$(buildah mount "${storage[@]}" "$container")
  tar -xpf "$tarball" --numeric-owner --exclude='./dev/*' -C "$root"
  buildah umount "${storage[@]}" "$container" > /dev/null
  buildah config "${storage[@]}" --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash --label "halfserve.base-tarball-sha256=$base_sum" "$container"
  previous_base=$(buildah images "${storage[@]}" --quiet --no-trunc "$base_image" 2>/dev/null || true)
  buildah commit "${storage[@]}" --quiet --rm "$container" "$base_image" > /dev/null
  trap - EXIT
  if [ -n "$previous_base" ]; then buildah rmi "${storage[@]}" "$previous_base" > /dev/null 2>&1 || true; fi
fi

# ---- 2. the image -------------------------------------------------------------------------------------------------
# What the image is made of: the Containerfile, the files of the context it lets in (the "!" lines of its ignore
# file) and the base. An image labelled with the same sum is up to date and is not built again
# (HALFSERVE_IMAGE_REBUILD=1 builds anyway, e.g. to take Debian's package updates).
shopt -s nullglob
included=()
while IFS= read -r pattern; do
  # shellcheck disable=SC2206  # the pattern is a glob to expand
  included+=($pattern)
done < <(sed -n 's/^!//p' deploy/Containerfile.dockerignore)
context_sum=$({ sha256sum deploy/Containerfile deploy/Containerfile.dockerignore; echo "$base_sum";
  find "${included[@]}" -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)
built_sum=$(buildah inspect "${storage[@]}" --type image --format '{{index .OCIv1.Config.Labels "halfserve.context-sha256"}}' \
  "$image" 2>/dev/null || true)
if [ "$built_sum" = "$context_sum" ] && [ "${HALFSERVE_IMAGE_REBUILD:-0}" != 1 ]; then
  say "$image is up to date (same Containerfile, context files and base)"
else
  # The build's own output (packages, compiler) goes to a log, shown when it fails. --pull=never: the base is
  # local, and no registry is asked about it. No --layers cache: under vfs every cached layer is a whole copy of its
  # root (4 GB for one build), and a source change recompiles everything anyway.
  log=$cache/build.log
  previous=$(buildah images "${storage[@]}" --quiet --no-trunc "$image" 2>/dev/null || true)
  say "building $image from deploy/Containerfile on $base_image (log: $log)"
  if ! buildah bud "${storage[@]}" --isolation chroot --pull=never \
         --file deploy/Containerfile --ignorefile deploy/Containerfile.dockerignore \
         --build-arg "BASE_IMAGE=$base_image" --label "halfserve.context-sha256=$context_sum" \
         --tag "$image" . > "$log" 2>&1; then
    tail -n 60 "$log" >&2
    fail "buildah bud failed (whole log: $log)"
  fi
  # The image this one replaces, now untagged: removed unless a container still uses it.
  if [ -n "$previous" ] && [ "$previous" != "$(buildah images "${storage[@]}" --quiet --no-trunc "$image")" ]; then
    buildah rmi "${storage[@]}" "$previous" > /dev/null 2>&1 || true
  fi
  say "built"
fi
size=$(buildah images "${storage[@]}" --format '{{.Size}}' "$image")
echo "$image $size"
