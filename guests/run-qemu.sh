#!/bin/sh
# Run the UART guests on QEMU (the reference platform).
#   ./run-qemu.sh NAME [extra qemu args]   run bin/NAME.elf, show output, exit with its status
#   ./run-qemu.sh --check                 run all, compare output and status with expected/
# QEMU's exit status is the guest's finisher code.
cd "$(dirname "$0")" || exit 1
QEMU=${QEMU:-qemu-system-riscv64}
run() {
  name=$1; shift
  timeout 120 "$QEMU" -machine virt -bios none -nographic -m 128M "$@" -kernel "bin/$name.elf"
}
if [ "$1" != "--check" ]; then
  run "$@"
  exit $?
fi
fail=0
# name:expected-exit-status
for t in hello:0 exit-code:42 isa-test:0 \
         seqread-small:0 seqwrite-small:0 memstress-small:0 cpubound-small:0 \
         seqread:0 seqwrite:0 memstress:0 cpubound:0; do
  name=${t%%:*}; want=${t##*:}
  for smp in 1 2; do
    out=$(run "$name" -smp $smp); rc=$?
    if [ "$rc" != "$want" ]; then
      echo "FAIL $name (-smp $smp): exit status $rc, expected $want"; fail=1
    elif [ "$out" != "$(cat "expected/$name.out")" ]; then
      echo "FAIL $name (-smp $smp): output differs from expected/$name.out:"; echo "$out"; fail=1
    else
      echo "ok   $name (-smp $smp, exit $rc)"
    fi
  done
done
exit $fail
