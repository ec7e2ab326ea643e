#!/bin/sh
# Build kmemvisor's Linux guest with a userland, from Debian's packages and source packages:
#   Image          Linux 6.1 (linux-source-6.1) with a built-in initramfs: static BusyBox
#                  (glibc, lp64d), /init, the workload scripts, memstress and seqio
#   disk.img.gz    an ext4 file system for the virtio disk (mke2fs -d): SQLite's shell, tcc with
#                  glibc's headers and shared libraries, the C sources tcc compiles
#   VERSIONS       the version of every Debian package the guest was built from
# Run by hand (CI uses the committed results). Everything else goes to guests/build/linux-userland/.
#   guests/linux/userland/build.sh          build (reuses sources and objects already there)
#   JOBS=4 guests/linux/userland/build.sh   more parallel make jobs (default 2)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
linux=$(cd "$here/.." && pwd)
build=$(cd "$linux/.." && pwd)/build/linux-userland
cross=riscv64-linux-gnu-
jobs=${JOBS:-2}
export SOURCE_DATE_EPOCH=0 KBUILD_BUILD_USER=kmemvisor KBUILD_BUILD_HOST=kmemvisor
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 1970' KBUILD_BUILD_VERSION=1

need="linux-source-6.1 gcc-riscv64-linux-gnu libc6-dev-riscv64-cross dpkg-dev tcl e2fsprogs cpio bc flex bison"
missing=
for pkg in $need; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
	echo "build.sh: missing Debian packages:$missing (apt-get install$missing)" >&2
	exit 1
fi
mkdir -p "$build/src" "$build/apt/lists/partial" "$build/apt/parts" "$build/stage" "$build/initramfs"

# --- Source packages: apt-get source through a private copy of this machine's own Debian
# sources with their source entries turned on, so the system's apt configuration is untouched.
for f in /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" >"$build/apt/parts/$(basename "$f")"
done
if [ -f /etc/apt/sources.list ]; then
	sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >"$build/apt/parts/sources.list"
fi
apt_private() {
	"$@" -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$build/apt/parts" \
		-o Dir::State::Lists="$build/apt/lists"
}
if [ ! -d "$build/src/busybox" ] || [ ! -d "$build/src/sqlite3" ] || [ ! -d "$build/src/tcc" ]; then
	apt_private apt-get update -qq
	for pkg in busybox sqlite3 tcc; do
		rm -rf "$build/src/$pkg" "$build/src/$pkg".tmp
		mkdir -p "$build/src/$pkg.tmp"
		(cd "$build/src/$pkg.tmp" && apt_private apt-get source -qq "$pkg" >/dev/null)
		mv "$(find "$build/src/$pkg.tmp" -mindepth 1 -maxdepth 1 -type d)" "$build/src/$pkg"
		cp "$build/src/$pkg.tmp"/*.dsc "$build/src/$pkg.dsc"
		rm -rf "$build/src/$pkg.tmp"
	done
fi
{
	echo "# Debian packages kmemvisor's Linux userland guest was built from (guests/linux/userland/build.sh)."
	for pkg in busybox sqlite3 tcc; do echo "$pkg $(sed -n 's/^Version: //p' "$build/src/$pkg.dsc")"; done
	for pkg in linux-source-6.1 libc6-dev-riscv64-cross gcc-riscv64-linux-gnu; do
		echo "$pkg $(dpkg-query -W -f='${Version}' "$pkg")"
	done
} >"$here/VERSIONS"

# --- BusyBox: defconfig, static, without tc (which no longer builds against 6.1's headers).
bb=$build/src/busybox
if [ ! -x "$bb/busybox" ]; then
	make -C "$bb" defconfig >/dev/null
	sed -i 's/^# CONFIG_STATIC is not set/CONFIG_STATIC=y/; s/^CONFIG_TC=y/# CONFIG_TC is not set/' "$bb/.config"
	make -C "$bb" oldconfig </dev/null >/dev/null
	make -C "$bb" -j"$jobs" CROSS_COMPILE=$cross busybox busybox.links >/dev/null
fi

# --- SQLite's shell: the amalgamation made by a native configure, compiled static for riscv64.
sq=$build/sqlite-host
if [ ! -x "$build/stage/bin/sqlite3" ]; then
	mkdir -p "$sq" "$build/stage/bin"
	(cd "$sq" && "$build/src/sqlite3/configure" --disable-tcl >/dev/null && make sqlite3.c shell.c >/dev/null)
	${cross}gcc -O2 -static -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION -I"$sq" \
		"$sq/shell.c" "$sq/sqlite3.c" -o "$build/stage/bin/sqlite3" -lm 2>/dev/null
fi

# --- tcc: a host cross compiler makes the riscv64 libtcc1.a; the riscv64 tcc itself is static,
# and finds its headers, start files and glibc on the disk (mounted on /mnt in the guest).
if [ ! -x "$build/stage/bin/tcc" ]; then
	rm -rf "$build/tcc-cross" "$build/tcc-target"
	cp -r "$build/src/tcc" "$build/tcc-cross"
	cp -r "$build/src/tcc" "$build/tcc-target"
	(cd "$build/tcc-cross" && ./configure >/dev/null && make cross-riscv64 >/dev/null)
	(cd "$build/tcc-target" && ./configure --cross-prefix=$cross --cpu=riscv64 --triplet=riscv64-linux-gnu \
		--extra-ldflags=-static --prefix=/mnt/usr --tccdir=/mnt/usr/lib/tcc \
		--sysincludepaths=/mnt/usr/lib/tcc/include:/mnt/usr/include --libpaths=/mnt/usr/lib/tcc:/mnt/usr/lib \
		--crtprefix=/mnt/usr/lib --elfinterp=/mnt/usr/lib/ld-linux-riscv64-lp64d.so.1 >/dev/null &&
		make tcc >/dev/null 2>&1)
	cp "$build/tcc-target/tcc" "$build/stage/bin/tcc"
fi

# --- The disk's file system: tcc's runtime, glibc for what tcc links, the sources it compiles.
sysroot=/usr/riscv64-linux-gnu
stage=$build/stage
rm -rf "$stage/lib"
mkdir -p "$stage/usr/lib/tcc" "$stage/src"
cp "$build/tcc-cross/riscv64-libtcc1.a" "$stage/usr/lib/tcc/libtcc1.a"
rm -rf "$stage/usr/lib/tcc/include" "$stage/usr/include"
cp -r "$build/tcc-cross/include" "$stage/usr/lib/tcc/include"
cp -r "$sysroot/include" "$stage/usr/include"
for f in crt1.o crti.o crtn.o libc_nonshared.a; do cp "$sysroot/lib/$f" "$stage/usr/lib/$f"; done
# glibc's shared objects beside the start files, where tcc looks for what libc.so.6 needs; the
# programs it makes run with LD_LIBRARY_PATH=/mnt/usr/lib (the guest's /lib has no glibc).
for f in ld-linux-riscv64-lp64d.so.1 libc.so.6 libm.so.6; do cp -L "$sysroot/lib/$f" "$stage/usr/lib/$f"; done
# glibc's libc.so is a linker script naming the build machine's paths: name the guest's.
printf 'GROUP ( /mnt/usr/lib/libc.so.6 /mnt/usr/lib/libc_nonshared.a AS_NEEDED ( /mnt/usr/lib/ld-linux-riscv64-lp64d.so.1 ) )\n' \
	>"$stage/usr/lib/libc.so"
ln -sf libm.so.6 "$stage/usr/lib/libm.so"
cp "$here/memstress.c" "$here/seqio.c" "$stage/src/"
find "$stage" -exec touch -h -d @0 {} +
rm -f "$build/disk.img"
# Fixed time, UUID and directory hash seed: a rebuild makes the same image.
E2FSPROGS_FAKE_TIME=1 mke2fs -q -t ext4 -U 6b6d7669-736f-7200-0000-000000000001 \
	-E root_owner=0:0,hash_seed=6b6d7669-736f-7200-0000-000000000002 -d "$stage" "$build/disk.img" 64M
gzip -9 -n -c "$build/disk.img" >"$here/disk.img.gz"

# --- The initramfs: BusyBox and its applet links, /init, the workloads, memstress and seqio.
ramfs=$build/initramfs
${cross}gcc -O2 -static -o "$ramfs/memstress" "$here/memstress.c"
${cross}gcc -O2 -static -o "$ramfs/seqio" "$here/seqio.c"
cp "$bb/busybox" "$ramfs/busybox"
{
	for d in /bin /sbin /usr /usr/bin /usr/sbin /dev /proc /sys /tmp /mnt /etc /etc/workloads /root; do
		echo "dir $d 0755 0 0"
	done
	echo "nod /dev/console 0600 0 0 c 5 1"
	echo "file /bin/busybox $ramfs/busybox 0755 0 0"
	while IFS= read -r link; do
		[ "$link" = /bin/busybox ] || echo "slink $link /bin/busybox 0777 0 0"
	done <"$bb/busybox.links"
	echo "file /init $here/init 0755 0 0"
	echo "file /bin/memstress $ramfs/memstress 0755 0 0"
	echo "file /bin/seqio $ramfs/seqio 0755 0 0"
	for w in "$here"/workloads/*; do echo "file /etc/workloads/$(basename "$w") $w 0755 0 0"; done
} >"$build/initramfs.list"

# --- The kernel: tinyconfig, the test kernel's fragment, then this guest's; every option of the
# fragments must survive olddefconfig. Shares the unpacked source with ../build.sh.
src=$(cd "$linux/.." && pwd)/build/linux/linux-source-6.1
obj=$build/obj
if [ ! -f "$src/Makefile" ]; then
	mkdir -p "$(dirname "$src")"
	tar -C "$(dirname "$src")" -xf /usr/src/linux-source-6.1.tar.xz
fi
mkdir -p "$obj"
kmake() { make -C "$src" O="$obj" ARCH=riscv CROSS_COMPILE=$cross "$@"; }
kmake tinyconfig >/dev/null
printf 'CONFIG_INITRAMFS_SOURCE="%s"\n' "$build/initramfs.list" >"$build/initramfs.config"
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" \
	"$linux/kmemvisor.config" "$here/userland.config" "$build/initramfs.config" >/dev/null
kmake olddefconfig >/dev/null
cat "$linux/kmemvisor.config" "$here/userland.config" | grep -E '^CONFIG_[A-Z0-9_]+=' | sort -t= -k1,1 -u |
	while IFS= read -r line; do
		opt=${line%%=*}
		want=$(grep -E "^$opt=" "$here/userland.config" || echo "$line")
		val=${want#*=}
		if [ "$val" = n ]; then
			! grep -q "^$opt=" "$obj/.config" || { echo "build.sh: $opt is set, wanted n" >&2; exit 1; }
		else
			grep -qxF "$want" "$obj/.config" || { echo "build.sh: $want did not survive" >&2; exit 1; }
		fi
	done
kmake -j"$jobs" Image >/dev/null
cp "$obj/arch/riscv/boot/Image" "$here/Image"
echo "build.sh: $here/Image ($(stat -c %s "$here/Image") bytes), $here/disk.img.gz ($(stat -c %s "$here/disk.img.gz") bytes)"
