#!/usr/bin/env bash
# Regenerates Sources/EtcdAPI/Generated/ from the definitions in Protos/.
#
# Steps:
#   1. make sure protoc is available (installs Debian's protobuf-compiler if not);
#   2. build protoc-gen-swift and protoc-gen-grpc-swift-2 in release mode from a
#      throwaway wrapper package kept in .build-protoc-plugins/ (gitignored);
#   3. wipe the previously generated files and run protoc again.
#
# The output only depends on Protos/ and the plugin versions, so running this twice
# gives byte-identical files. The generated code is committed; CI never runs this.
#
# Environment overrides:
#   PROTOC                    protoc binary to use (default: protoc from PATH)
#   PROTOC_PLUGIN_BUILD_DIR   where the plugin wrapper package lives
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

proto_dir="Protos"
out_dir="Sources/EtcdAPI/Generated"
plugin_pkg="${PROTOC_PLUGIN_BUILD_DIR:-$repo_root/.build-protoc-plugins}"

swift_protobuf_version="1.39.0"
grpc_swift_protobuf_version="2.4.1"

log() { printf '==> %s\n' "$*" >&2; }

# --- 1. protoc ------------------------------------------------------------------------
PROTOC="${PROTOC:-protoc}"
if ! command -v "$PROTOC" >/dev/null 2>&1; then
    log "protoc not found; installing protobuf-compiler"
    sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends protobuf-compiler
    PROTOC=protoc
fi
log "using $("$PROTOC" --version)"

# --- 2. plugins -----------------------------------------------------------------------
mkdir -p "$plugin_pkg"
cat >"$plugin_pkg/Package.swift" <<EOF
// swift-tools-version:6.0
// Written by scripts/generate-protos.sh; only used to build the protoc plugins.
import PackageDescription

let package = Package(
    name: "protoc-plugins",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "$swift_protobuf_version"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "$grpc_swift_protobuf_version"),
    ],
    targets: []
)
EOF

log "building protoc-gen-swift"
swift build --package-path "$plugin_pkg" -c release --product protoc-gen-swift
log "building protoc-gen-grpc-swift-2"
swift build --package-path "$plugin_pkg" -c release --product protoc-gen-grpc-swift-2
bin_dir="$(swift build --package-path "$plugin_pkg" -c release --show-bin-path)"
gen_swift="$bin_dir/protoc-gen-swift"
gen_grpc="$bin_dir/protoc-gen-grpc-swift-2"
for plugin in "$gen_swift" "$gen_grpc"; do
    [ -x "$plugin" ] || { echo "missing plugin: $plugin" >&2; exit 1; }
done

# --- 3. generate ----------------------------------------------------------------------
# Every .proto under Protos/, in a fixed order, as paths relative to Protos/.
mapfile -t all_protos < <(cd "$proto_dir" && find . -name '*.proto' -print | sed 's|^\./||' | LC_ALL=C sort)
if [ "${#all_protos[@]}" -eq 0 ]; then
    echo "no .proto files under $proto_dir" >&2
    exit 1
fi
# Only files that declare a service get gRPC stubs.
service_protos=()
for f in "${all_protos[@]}"; do
    if grep -Eq '^[[:space:]]*service[[:space:]]+[A-Za-z_]' "$proto_dir/$f"; then
        service_protos+=("$f")
    fi
done

log "removing old generated code in $out_dir"
rm -rf "$out_dir"
mkdir -p "$out_dir"
rm -f Sources/EtcdAPI/Placeholder.swift

log "protoc --swift_out: ${all_protos[*]}"
"$PROTOC" \
    --proto_path="$proto_dir" \
    --plugin=protoc-gen-swift="$gen_swift" \
    --swift_out="$out_dir" \
    --swift_opt=Visibility=Public,FileNaming=DropPath \
    "${all_protos[@]}"

log "protoc --grpc-swift-2_out: ${service_protos[*]}"
"$PROTOC" \
    --proto_path="$proto_dir" \
    --plugin=protoc-gen-grpc-swift-2="$gen_grpc" \
    --grpc-swift-2_out="$out_dir" \
    --grpc-swift-2_opt=Visibility=Public,FileNaming=DropPath,Server=true,Client=true \
    "${service_protos[@]}"

log "generated:"
(cd "$out_dir" && LC_ALL=C ls -1) >&2
