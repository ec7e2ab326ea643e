#!/bin/sh
# Build kmemvisor's Linux test kernel (guests/linux/Image) from Debian's packages:
# linux-source-6.1 (the kernel and its nolibc) and gcc-riscv64-linux-gnu.
# Run by hand; CI uses the committed Image. Everything else goes to guests/build/linux/.
#   guests/linux/build.sh            build (reuses the unpacked source and objects)
#   JOBS=4 guests/linux/build.sh     more parallel make jobs (default 2)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$here/.." && pwd)/build/linux
src=$build/linux-source-6.1
obj=$build/obj
sysroot=$build/nolibc
tarball=/usr/src/linux-source-6.1.tar.xz
cross=riscv64-linux-gnu-
jobs=${JOBS:-2}

for pkg in linux-source-6.1 gcc-riscv64-linux-gnu; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
		echo "build.sh: $pkg is missing: apt-get install linux-source-6.1 gcc-riscv64-linux-gnu" >&2
		exit 1
	fi
done

mkdir -p "$build" "$obj" "$sysroot"
if [ ! -f "$src/Makefile" ]; then
	echo "build.sh: unpacking $tarball"
	tar -C "$build" -xf "$tarball"
fi

# No host name, user, date or build count of this build inside the Image.
export KBUILD_BUILD_USER=kmemvisor KBUILD_BUILD_HOST=kmemvisor
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 1970' KBUILD_BUILD_VERSION=1
kmake() { make -C "$src" O="$obj" ARCH=riscv CROSS_COMPILE=$cross "$@"; }

# tinyconfig, then our fragment; every option of the fragment must survive olddefconfig.
kmake tinyconfig >/dev/null
printf 'CONFIG_INITRAMFS_SOURCE="%s"\n' "$build/initramfs.list" >"$build/initramfs.config"
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" \
	"$here/kmemvisor.config" "$build/initramfs.config" >/dev/null
kmake olddefconfig >/dev/null
missing=0
grep -E '^CONFIG_[A-Z0-9_]+=' "$here/kmemvisor.config" | while IFS= read -r line; do
	opt=${line%%=*}
	val=${line#*=}
	if [ "$val" = n ]; then
		! grep -q "^$opt=" "$obj/.config" || { echo "build.sh: $opt is set, wanted n" >&2; exit 1; }
	else
		grep -qxF "$line" "$obj/.config" || { echo "build.sh: $line did not survive: $(grep "^$opt=\|$opt is not set" "$obj/.config")" >&2; exit 1; }
	fi
done || missing=1
[ "$missing" = 0 ] || exit 1

# /init: static, no libc but the kernel's nolibc, for our rv64imac harts (lp64:
# no floating-point registers). No libgcc: the toolchain's is lp64d, and rv64imac
# needs nothing from it.
# The kernel's UAPI headers come from its own tree (make headers), which needs the config.
kmake headers >/dev/null
make -C "$src/tools/include/nolibc" ARCH=riscv OUTPUT="$sysroot/" headers >/dev/null
${cross}gcc -Os -static -nostdlib -fno-pie -no-pie -march=rv64imac -mabi=lp64 \
	-fno-asynchronous-unwind-tables -fno-ident -Wall -Wextra \
	-I"$sysroot/sysroot/include" -I"$obj/usr/include" -include nolibc.h \
	-Wl,--build-id=none -o "$build/init" "$here/init.c"
# (The initramfs records a file's own mtime.)
touch -d @0 "$build/init"
sed "s|@INIT@|$build/init|" "$here/initramfs.list" >"$build/initramfs.list"

kmake -j"$jobs" Image
cp "$obj/arch/riscv/boot/Image" "$here/Image"
echo "build.sh: $here/Image ($(stat -c %s "$here/Image") bytes)"
