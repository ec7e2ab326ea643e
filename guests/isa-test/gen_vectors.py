#!/usr/bin/env python3
"""Reference model for isa-test: computes the expected results of RV64IM
register-register and register-immediate instructions and of RV64A AMOs
straight from the ISA manual's definitions, and prints a C header
(isa-test/vectors.h).  Regenerate with `make -C guests vectors`.
The header is committed, so building the guests needs no Python."""

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


def s64(x):
    x &= M64
    return x - (1 << 64) if x >> 63 else x


def s32(x):
    x &= M32
    return x - (1 << 32) if x >> 31 else x


def sext32(x):
    return s32(x) & M64


def tdiv(a, b):                 # C-style truncating division of Python ints
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def div(a, b):
    a, b = s64(a), s64(b)
    if b == 0:
        return M64
    if a == -(1 << 63) and b == -1:
        return a & M64
    return tdiv(a, b) & M64


def rem(a, b):
    a, b = s64(a), s64(b)
    if b == 0:
        return a & M64
    if a == -(1 << 63) and b == -1:
        return 0
    return (a - tdiv(a, b) * b) & M64


def divw(a, b):
    a, b = s32(a), s32(b)
    if b == 0:
        return M64
    if a == -(1 << 31) and b == -1:
        return a & M64
    return sext32(tdiv(a, b))


def remw(a, b):
    a, b = s32(a), s32(b)
    if b == 0:
        return a & M64
    if a == -(1 << 31) and b == -1:
        return 0
    return sext32(a - tdiv(a, b) * b)


RR = {
    'add':    lambda a, b: (a + b) & M64,
    'sub':    lambda a, b: (a - b) & M64,
    'sll':    lambda a, b: (a << (b & 63)) & M64,
    'slt':    lambda a, b: int(s64(a) < s64(b)),
    'sltu':   lambda a, b: int(a < b),
    'xor':    lambda a, b: a ^ b,
    'srl':    lambda a, b: a >> (b & 63),
    'sra':    lambda a, b: (s64(a) >> (b & 63)) & M64,
    'or':     lambda a, b: a | b,
    'and':    lambda a, b: a & b,
    'addw':   lambda a, b: sext32(a + b),
    'subw':   lambda a, b: sext32(a - b),
    'sllw':   lambda a, b: sext32(a << (b & 31)),
    'srlw':   lambda a, b: sext32((a & M32) >> (b & 31)),
    'sraw':   lambda a, b: sext32(s32(a) >> (b & 31)),
    'mul':    lambda a, b: (a * b) & M64,
    'mulh':   lambda a, b: ((s64(a) * s64(b)) >> 64) & M64,
    'mulhsu': lambda a, b: ((s64(a) * b) >> 64) & M64,
    'mulhu':  lambda a, b: (a * b) >> 64,
    'div':    div,
    'divu':   lambda a, b: M64 if b == 0 else a // b,
    'rem':    rem,
    'remu':   lambda a, b: a if b == 0 else a % b,
    'mulw':   lambda a, b: sext32(a * b),
    'divw':   divw,
    'divuw':  lambda a, b: M64 if (b & M32) == 0 else sext32((a & M32) // (b & M32)),
    'remw':   remw,
    'remuw':  lambda a, b: sext32(a) if (b & M32) == 0 else sext32((a & M32) % (b & M32)),
}

# operand values: zero, small, all-ones, sign boundaries of 64 and 32 bits,
# shift amounts (low 5/6 bits) 0,1,2,7,31,33,48,57,62,63 among them
VALUES = [
    0x0000000000000000, 0x0000000000000001, 0x0000000000000002,
    0x0000000000000007, 0x0000000000000021, 0xffffffffffffffff,
    0xfffffffffffffffe, 0xfffffffffffffff9, 0x7fffffffffffffff,
    0x8000000000000000, 0x000000007fffffff, 0x0000000080000000,
    0xffffffff80000000, 0x00000000ffffffff, 0x123456789abcdef0,
    0xfedcba987654321f,
]

RI = {
    'addi':  (lambda a, i: (a + i) & M64, [-2048, -1, 0, 1, 2047, -1366]),
    'slti':  (lambda a, i: int(s64(a) < i), [-2048, -1, 0, 1, 2047]),
    'sltiu': (lambda a, i: int(a < (i & M64)), [-2048, -1, 0, 1, 2047]),
    'xori':  (lambda a, i: a ^ (i & M64), [-2048, -1, 0, 1365, 2047]),
    'ori':   (lambda a, i: a | (i & M64), [-2048, -1, 0, 1365, 2047]),
    'andi':  (lambda a, i: a & (i & M64), [-2048, -1, 0, 1365, 2047]),
    'slli':  (lambda a, i: (a << i) & M64, [0, 1, 31, 32, 63]),
    'srli':  (lambda a, i: a >> i, [0, 1, 31, 32, 63]),
    'srai':  (lambda a, i: (s64(a) >> i) & M64, [0, 1, 31, 32, 63]),
    'addiw': (lambda a, i: sext32(a + i), [-2048, -1, 0, 1, 2047]),
    'slliw': (lambda a, i: sext32(a << i), [0, 1, 16, 31]),
    'srliw': (lambda a, i: sext32((a & M32) >> i), [0, 1, 16, 31]),
    'sraiw': (lambda a, i: sext32(s32(a) >> i), [0, 1, 16, 31]),
}


def amo(op, width, mem, src):
    """returns (rd, new memory value) for an AMO on a width-bit location"""
    mask = M64 if width == 64 else M32
    sx = s64 if width == 64 else s32
    m, s = mem & mask, src & mask
    new = {
        'amoswap': s, 'amoadd': (m + s) & mask, 'amoxor': m ^ s,
        'amoand': m & s, 'amoor': m | s,
        'amomin': m if sx(m) <= sx(s) else s, 'amomax': m if sx(m) >= sx(s) else s,
        'amominu': min(m, s), 'amomaxu': max(m, s),
    }[op]
    rd = m if width == 64 else sext32(m)
    return rd, new


AMO_OPS = ['amoswap', 'amoadd', 'amoxor', 'amoand', 'amoor',
           'amomin', 'amomax', 'amominu', 'amomaxu']
AMO_VALUES = [0x0000000000000000, 0x0000000000000001, 0xffffffffffffffff,
              0x7fffffffffffffff, 0x8000000000000000, 0x000000007fffffff,
              0xffffffff80000000, 0x00000000fedcba98, 0x5555aaaa3333cccc]
AMO_GUARD = 0xa5a5a5a5c3c3c3c3   # the other half of the doubleword, for .w


def main():
    out = []
    p = out.append
    p('/* Generated by isa-test/gen_vectors.py (reference model from the ISA manual).')
    p(' * Do not edit: run `make -C guests vectors`. */')
    p('#define NVALUES %d' % len(VALUES))
    p('static const uint64_t rr_values[NVALUES] = {')
    for v in VALUES:
        p('  0x%016xULL,' % v)
    p('};')
    p('')
    p('/* RR_OPS(X): X(name, expected[a][b]) for a, b in rr_values */')
    p('#define RR_OPS(X) \\')
    for name in RR:
        f = RR[name]
        exps = ', '.join('0x%xULL' % f(a, b) for a in VALUES for b in VALUES)
        p('  X(%s, (%s)) \\' % (name, exps))
    p('')
    p('')
    p('/* RI_TESTS(X): X(op, a, imm, expected) */')
    p('#define RI_TESTS(X) \\')
    for name, (f, imms) in RI.items():
        for a in VALUES:
            for i in imms:
                p('  X(%s, 0x%xULL, %d, 0x%xULL) \\' % (name, a, i, f(a, i)))
    p('')
    p('')
    p('#define AMO_GUARD 0x%016xULL' % AMO_GUARD)
    p('#define NAMOVALUES %d' % len(AMO_VALUES))
    p('static const uint64_t amo_values[NAMOVALUES] = {')
    for v in AMO_VALUES:
        p('  0x%016xULL,' % v)
    p('};')
    p('/* AMO_OPS(X): X(ident, mnemonic, width, {rd, memory after}[mem][src]).  For .w the')
    p(' * operation is on the low word of a doubleword (mem, src indices of the same')
    p(' * parity) or the high word (different parity); the other word holds AMO_GUARD\'s')
    p(' * matching half and must not change. */')
    p('#define AMO_OPS(X) \\')
    for width in (32, 64):
        for op in AMO_OPS:
            cells = []
            for i, mv in enumerate(AMO_VALUES):
                for j, sv in enumerate(AMO_VALUES):
                    rd, new = amo(op, width, mv, sv)
                    if width == 64:
                        after = new
                    elif (i + j) % 2 == 0:      # low word
                        after = (AMO_GUARD & ~M32) | new
                    else:                       # high word
                        after = (new << 32) | (AMO_GUARD & M32)
                    cells.append('{0x%xULL, 0x%xULL}' % (rd, after))
            sfx = 'w' if width == 32 else 'd'
            p('  X(%s_%s, "%s.%s", %s, (%s)) \\' % (op, sfx, op, sfx, width, ', '.join(cells)))
    p('')
    print('\n'.join(out))


if __name__ == '__main__':
    main()
