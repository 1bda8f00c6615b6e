#!/usr/bin/env bash
# Installs what building and testing stead needs on Debian 12, and nothing
# that is already there. Safe to run again.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "setup-debian.sh: run as root (stead runs pods, mounts volumes and configures networks)" >&2
	exit 1
fi

# Commands stead and its tests call, and the Debian package that has each.
declare -A packages=(
	[ip]=iproute2
	[nft]=nftables
	[make]=make
	[gcc]=gcc
	[git]=git
	[update-ca-certificates]=ca-certificates
	[dnsperf]=dnsperf # bench/dns's load generator
	[mkfs.ext4]=e2fsprogs # local-path volumes (also resize2fs, e2fsck)
	[nsenter]=util-linux # test/e2e runs agents in network namespaces of their own
)
missing=()
for cmd in "${!packages[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup-debian.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

go=$(command -v go || echo /usr/local/go/bin/go)
if ! [ -x "$go" ]; then
	echo "setup-debian.sh: Go is not installed; install Go 1.26 or later from https://go.dev/dl/ into /usr/local/go" >&2
	exit 1
fi
version=$("$go" env GOVERSION)
minor=$(echo "$version" | sed -E 's/^go1\.([0-9]+).*/\1/')
if [ "$minor" -lt 26 ]; then
	echo "setup-debian.sh: $version is too old; stead needs Go 1.26 or later" >&2
	exit 1
fi
echo "setup-debian.sh: ready ($version)"
