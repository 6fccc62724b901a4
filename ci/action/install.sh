#!/usr/bin/env bash
# Install a released promptgate binary for this runner, checked against its published SHA-256.
#
# Environment: PROMPTGATE_VERSION (a tag or `latest`), PROMPTGATE_REPOSITORY (owner/name whose
# releases to use), GH_TOKEN (optional), RUNNER_OS / RUNNER_ARCH (set by Actions; `uname`
# otherwise), GITHUB_OUTPUT and GITHUB_PATH (set by Actions), RUNNER_TEMP. For tests,
# PROMPTGATE_RELEASE_URL replaces https://github.com/<repository>/releases.
#
# Sets the output `installed` to `true` when a release was installed, `false` when no release
# matches this runner or version (the action then builds from source). A release whose checksum
# does not match is an error, never a fallback: a tampered or truncated download must not run.
set -euo pipefail

fail() {
    echo "::error title=promptgate install::$1" >&2
    exit 1
}
no_release() {
    echo "no promptgate release for $target at $version ($1): building from source" >&2
    echo "installed=false" >> "$GITHUB_OUTPUT"
    exit 0
}

: "${GITHUB_OUTPUT:?set by GitHub Actions}"
: "${GITHUB_PATH:?set by GitHub Actions}"
version="${PROMPTGATE_VERSION:-latest}"
os="${RUNNER_OS:-$(uname -s)}"
arch="${RUNNER_ARCH:-$(uname -m)}"
case "$os/$arch" in
    Linux/X64 | Linux/x86_64) target=x86_64-unknown-linux-gnu ;;
    Linux/ARM64 | Linux/aarch64) target=aarch64-unknown-linux-gnu ;;
    macOS/ARM64 | Darwin/arm64) target=aarch64-apple-darwin ;;
    *) target="$os-$arch"; no_release "no binary is published for this platform" ;;
esac
case "$version" in
    latest) path=latest/download ;;
    v[0-9]*) path="download/$version" ;;
    *) fail "version '$version' is neither \`latest\` nor a tag such as v0.2.0" ;;
esac
if [ -n "${PROMPTGATE_RELEASE_URL:-}" ]; then
    base="$PROMPTGATE_RELEASE_URL/$path"
elif [ -n "${PROMPTGATE_REPOSITORY:-}" ]; then
    base="https://github.com/$PROMPTGATE_REPOSITORY/releases/$path"
else
    no_release "the action's repository is unknown"
fi

archive="promptgate-$target"
work="$(mktemp -d "${RUNNER_TEMP:-/tmp}/promptgate-install.XXXXXX")"
auth=()
if [ -n "${GH_TOKEN:-}" ] && [ -z "${PROMPTGATE_RELEASE_URL:-}" ]; then
    auth=(-H "Authorization: Bearer $GH_TOKEN")
fi
fetch() {
    curl --fail --silent --show-error --location --retry 3 --max-filesize 200000000 \
        ${auth[@]+"${auth[@]}"} -o "$work/$1" "$base/$1"
}
fetch "$archive.tar.gz" || no_release "no $archive.tar.gz"
fetch "$archive.sha256" || fail "the release has $archive.tar.gz but no $archive.sha256 to check it against"

expected="$(awk 'NR == 1 { print tolower($1) }' "$work/$archive.sha256")"
case "$expected" in
    [0-9a-f]*) [ "${#expected}" -eq 64 ] || fail "$archive.sha256 does not hold a SHA-256" ;;
    *) fail "$archive.sha256 does not hold a SHA-256" ;;
esac
if command -v sha256sum > /dev/null; then
    actual="$(sha256sum "$work/$archive.tar.gz" | awk '{ print $1 }')"
else
    actual="$(shasum -a 256 "$work/$archive.tar.gz" | awk '{ print $1 }')"
fi
[ "$actual" = "$expected" ] || fail "$archive.tar.gz has SHA-256 $actual, its release says $expected: refusing to install it"

bin="$work/bin"
mkdir -p "$bin"
tar -xzf "$work/$archive.tar.gz" -C "$bin" promptgate || fail "$archive.tar.gz holds no promptgate binary"
chmod +x "$bin/promptgate"
"$bin/promptgate" --version > /dev/null || fail "the installed promptgate does not run on this runner"
echo "$bin" >> "$GITHUB_PATH"
echo "installed=true" >> "$GITHUB_OUTPUT"
echo "installed $("$bin/promptgate" --version) ($target, SHA-256 $actual)"
