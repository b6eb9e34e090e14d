#!/usr/bin/env bash
# Build Segue's host plugins: the FMOD DSP and the Wwise source, which read Segue's music from
# shared memory (engine/data/segue_ring.h). Each needs its vendor's SDK, which Segue does not
# ship; a plugin whose SDK is not given is skipped with a note.
#
#   FMOD_SDK=/opt/fmod/api/core   examples/build_plugins.sh   # needs $FMOD_SDK/inc/fmod.h
#   WWISE_SDK=/opt/Wwise/SDK      examples/build_plugins.sh   # needs $WWISE_SDK/include/AK/
#
# Output: build/plugins/libsegue_fmod.so and build/plugins/libSegueSource.so (Linux; on macOS
# the same commands give Mach-O bundles: rename to .dylib). For consoles and Windows, compile
# the same sources in the vendor's plugin project; the reader needs POSIX shared memory.
# Without either SDK it still compiles the reader itself (C99, C11 and C++) as a check.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
include="$root/engine/data"
out="${OUT_DIR:-$root/build/plugins}"
cc="${CC:-cc}"
cxx="${CXX:-c++}"

# Older glibc keeps shm_open in librt.
rt=""
if printf 'int main(void){return 0;}' | "$cc" -x c - -lrt -o /dev/null 2>/dev/null; then
    rt="-lrt"
fi

echo "checking segue_ring.h with $cc (c99, c11) and $cxx (c++11)"
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
"$cc" -std=c99 -Wall -Wextra -pedantic -Werror -I"$include" \
    "$root/tests/c/ring_consumer.c" -o "$probe/c99" $rt
"$cc" -std=c11 -Wall -Wextra -pedantic -Werror -I"$include" \
    "$root/tests/c/ring_consumer.c" -o "$probe/c11" $rt
printf '#include "segue_ring.h"\nint main(){segue_ring r; float b[512];\n'\
'segue_ring_open(&r,"x"); segue_ring_read(&r,b,256,2); segue_ring_close(&r);}\n' \
    > "$probe/use.cpp"
"$cxx" -std=c++11 -Wall -Wextra -pedantic -Werror -I"$include" "$probe/use.cpp" \
    -o "$probe/cxx" $rt

built=0
if [[ -n "${FMOD_SDK:-}" ]]; then
    if [[ ! -f "$FMOD_SDK/inc/fmod.h" ]]; then
        echo "FMOD_SDK=$FMOD_SDK has no inc/fmod.h (point it at .../api/core)" >&2
        exit 1
    fi
    mkdir -p "$out"
    "$cc" -std=c11 -O2 -fPIC -shared -Wall -Wextra -I"$FMOD_SDK/inc" -I"$include" \
        "$here/fmod/segue_fmod_dsp.c" -o "$out/libsegue_fmod.so" -pthread $rt
    echo "built $out/libsegue_fmod.so"
    built=$((built + 1))
else
    echo "skipped FMOD plugin: set FMOD_SDK to the FMOD Core API folder (with inc/fmod.h)"
fi

if [[ -n "${WWISE_SDK:-}" ]]; then
    if [[ ! -d "$WWISE_SDK/include/AK" ]]; then
        echo "WWISE_SDK=$WWISE_SDK has no include/AK (point it at the Wwise SDK folder)" >&2
        exit 1
    fi
    mkdir -p "$out"
    "$cxx" -std=c++17 -O2 -fPIC -shared -Wall -Wextra -I"$WWISE_SDK/include" -I"$include" \
        "$here/wwise/SegueSource.cpp" -o "$out/libSegueSource.so" -pthread $rt
    echo "built $out/libSegueSource.so"
    built=$((built + 1))
else
    echo "skipped Wwise plugin: set WWISE_SDK to the Wwise SDK folder (with include/AK)"
fi

echo "$built plugin(s) built"
