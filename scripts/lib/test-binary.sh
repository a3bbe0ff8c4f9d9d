# Shared by the soak scripts: builds the test bundle once and finds it, and draws random seeds.
# Source it after `cd` to the repository root. Honours SOAK_CONFIGURATION (debug or release; a
# release build needs -enable-testing for @testable imports) and SOAK_SCRATCH_PATH (default
# .build-soak, so that the usual .build is left alone). Sets `binary`.

soak_configuration="${SOAK_CONFIGURATION:-debug}"
soak_scratch="${SOAK_SCRATCH_PATH:-.build-soak}"

build_test_binary() {
    local label="$1"
    local flags=(--build-tests --scratch-path "$soak_scratch" -c "$soak_configuration")
    if [[ "$soak_configuration" == "release" ]]; then
        flags+=(-Xswiftc -enable-testing)
    fi
    echo "$label: building tests ($soak_configuration) in $soak_scratch"
    swift build "${flags[@]}"
    binary="$(swift build "${flags[@]}" --show-bin-path)/swift-etcdPackageTests.xctest"
}

random_seed() {
    od -An -N8 -tu8 /dev/urandom | tr -d ' \n'
}
