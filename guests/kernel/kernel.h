/* minikernel: constants shared by the assembly and the C code. */
#ifndef MINIKERNEL_H
#define MINIKERNEL_H

/* mstatus / sstatus */
#define MSTATUS_MPP_MASK (3UL << 11)
#define MSTATUS_MPP_S    (1UL << 11)
#define SSTATUS_SIE      (1UL << 1)
#define SSTATUS_SPIE     (1UL << 5)
#define SSTATUS_SPP      (1UL << 8)
#define SSTATUS_SUM      (1UL << 18)
#define SSTATUS_MXR      (1UL << 19)

/* interrupt bits (mip/mie/sip/sie) */
#define IRQ_S_SOFT  1
#define IRQ_S_TIMER 5
#define IRQ_M_TIMER 7
#define IRQ_S_EXT   9
#define MIP_STIP    (1UL << IRQ_S_TIMER)
#define MIP_MTIP    (1UL << IRQ_M_TIMER)

/* exception causes */
#define EXC_INST_MISALIGNED 0
#define EXC_INST_ACCESS     1
#define EXC_ILLEGAL         2
#define EXC_BREAKPOINT      3
#define EXC_LOAD_MISALIGNED 4
#define EXC_LOAD_ACCESS     5
#define EXC_STORE_MISALIGNED 6
#define EXC_STORE_ACCESS    7
#define EXC_ECALL_U         8
#define EXC_ECALL_S         9
#define EXC_INST_PAGE       12
#define EXC_LOAD_PAGE       13
#define EXC_STORE_PAGE      15

/* CLINT (hart 0) */
#define CLINT_MTIMECMP0 0x02004000
#define CLINT_MTIME     0x0200bff8

/* SBI-like interface served by the M-mode trap handler (ecall from S) */
#define SBI_SET_TIMER   0      /* a0 = absolute mtimecmp value */
#define SBI_ERR_NOT_SUPPORTED (-2)

/* the user program's virtual layout (4 KiB pages, one L0 table) */
#define USER_VA        0x00400000UL  /* code: R X U        */
#define USER_DATA_VA   0x00401000UL  /* data: R W U        */
#define USER_STACK_VA  0x005ff000UL  /* stack: R W U       */
#define USER_STACK_TOP 0x00600000UL

/* trap frame: x0..x31, then sepc */
#define FRAME_SEPC  32
#define FRAME_SIZE  (34 * 8)

/* kernel context saved by enter_user (ra, sp, s0-s11) */
#define KCTX_SIZE   (14 * 8)

#endif
