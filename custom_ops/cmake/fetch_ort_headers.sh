#!/usr/bin/env bash
# Put onnxruntime's C/C++ headers into DEST/include.
# On Debian/Ubuntu: download libonnxruntime-dev from Debian's trixie suite through this
# machine's own apt mirror (read from its apt sources), with a private apt state folder.
# Elsewhere: the official onnxruntime release archive, which carries the same headers.
set -euo pipefail
dest=${1:?usage: fetch_ort_headers.sh DEST}
version=${SIT_ORT_HEADERS_VERSION:-1.21.0}
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mirror_from_apt() {
  local uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ {print $2; exit}' "$f")
    case "$uri" in *debian*) ;; *) uri="";; esac
    [ -n "$uri" ] && break
  done
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $2 ~ /debian/ && $2 !~ /security/ {print ($2 ~ /^\[/ ? $3 : $2); exit}' /etc/apt/sources.list)
  fi
  echo "$uri"
}

from_debian() {
  command -v apt-get >/dev/null && command -v dpkg >/dev/null || return 1
  local mirror
  mirror=$(mirror_from_apt)
  [ -n "$mirror" ] || return 1
  mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/apt/sources"
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  {
    echo "Types: deb"
    echo "URIs: $mirror"
    echo "Suites: trixie"
    echo "Components: main"
    [ -f "$keyring" ] && echo "Signed-By: $keyring"
  } > "$work/apt/sources/trixie.sources"
  local opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/apt/sources"
              -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache"
              -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root" -qq)
  apt-get "${opts[@]}" update >&2 || return 1
  (cd "$work" && apt-get "${opts[@]}" download libonnxruntime-dev >&2) || return 1
  dpkg -x "$work"/libonnxruntime-dev_*.deb "$work/x" || return 1
  [ -f "$work/x/usr/include/onnxruntime/onnxruntime_cxx_api.h" ] || return 1
  rm -rf "$dest/include" && cp -r "$work/x/usr/include/onnxruntime" "$dest/include"
}

from_release() {
  local arch
  case "$(uname -m)" in x86_64) arch=x64;; aarch64) arch=aarch64;; *) return 1;; esac
  local name="onnxruntime-linux-$arch-$version"
  local url="https://github.com/microsoft/onnxruntime/releases/download/v$version/$name.tgz"
  if command -v curl >/dev/null; then curl -fsSL "$url" -o "$work/ort.tgz" || return 1
  elif command -v wget >/dev/null; then wget -q "$url" -O "$work/ort.tgz" || return 1
  else return 1; fi
  tar -xzf "$work/ort.tgz" -C "$work" "$name/include" || return 1
  rm -rf "$dest/include" && cp -r "$work/$name/include" "$dest/include"
}

from_debian || from_release || { echo "could not download onnxruntime headers (Debian trixie's libonnxruntime-dev or the onnxruntime $version release archive)" >&2; exit 1; }
echo "$dest/include"
