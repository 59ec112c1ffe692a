/*
 * Native side of the differential test (DESIGN.md section 8): runs x86-64 code sequences on the
 * real CPU and reports the registers, flags and memory they leave behind.
 *
 * One long-lived process; cases arrive on stdin and results leave on stdout, both binary and
 * little-endian (the layout is mirrored in test/native/native-runner.ts):
 *
 *   case   : u32 'CASE', u32 code_len, u32 patch_count, u32 0,
 *            u64 regs[16] (rsp is ignored: the harness sets STACK_TOP), u64 rflags (status flags
 *            only), u64 mem_seed, code[code_len], then patch_count x (u32 offset, u32 len, bytes)
 *   sync   : u32 'SYNC', 12 bytes of zero -> flush stdout
 *   result : u32 'RSLT', u32 status, u64 regs[16], u64 rflags, u64 fault_rip, u64 fault_addr,
 *            u32 run_count, then run_count x (u32 offset, u32 len, bytes) of scratch bytes that
 *            differ from the initial image
 *
 * Layout (fixed, so code bytes and addresses are identical to the simulator's):
 *   code    0x20000000, 64 KiB, RWX; the exit stub at 0x2000f000 jumps back into the harness
 *   scratch 0x10000000, 64 KiB, RW, filled per case from splitmix64(mem_seed); r15 points here
 *           by convention, the GS base too (so %gs:disp is scratch + disp), and the stack top
 *           is 0x10010000 - 256
 * The case's code ends by jumping to the exit stub (the runner appends that jump).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <asm/prctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define CODE_BASE 0x20000000UL
#define CODE_SIZE 0x10000UL
#define EXIT_STUB (CODE_BASE + 0xf000UL)
#define SCRATCH_BASE 0x10000000UL
#define SCRATCH_SIZE 0x10000UL
#define STACK_TOP (SCRATCH_BASE + SCRATCH_SIZE - 256)
#define STATUS_FLAGS 0x8d5UL

#define MAGIC_CASE 0x45534143u /* 'CASE' */
#define MAGIC_SYNC 0x434e5953u /* 'SYNC' */
#define MAGIC_RSLT 0x544c5352u /* 'RSLT' */

enum { ST_OK = 0, ST_SEGV = 1, ST_ILL = 2, ST_FPE = 3, ST_BUS = 4, ST_TRAP = 5, ST_TIMEOUT = 6 };

/* Guest state in and out of the trampoline: regs[16], rflags, entry. Offsets used by the asm. */
struct guest_state {
  uint64_t regs[16];
  uint64_t rflags;
  uint64_t entry;
};

struct guest_state g_in, g_out;
uint64_t g_host_rsp;

void run_guest(void);
extern char guest_return[];

/*
 * run_guest: save the host's callee-saved registers and stack, load all 16 GPRs and RFLAGS from
 * g_in, jump to the code. guest_return (reached through the exit stub) stores all 16 GPRs with
 * plain moves (which leave flags alone), switches back to the host stack, and only then uses
 * pushfq, so the guest's stack memory is never touched by the harness.
 */
__asm__(
    ".text\n"
    ".globl run_guest\n"
    "run_guest:\n"
    "  push %rbx\n  push %rbp\n  push %r12\n  push %r13\n  push %r14\n  push %r15\n"
    "  mov %rsp, g_host_rsp(%rip)\n"
    "  pushq g_in+128(%rip)\n"
    "  popfq\n"
    "  mov g_in+0(%rip), %rax\n  mov g_in+8(%rip), %rcx\n  mov g_in+16(%rip), %rdx\n  mov g_in+24(%rip), %rbx\n"
    "  mov g_in+32(%rip), %rsp\n  mov g_in+40(%rip), %rbp\n  mov g_in+48(%rip), %rsi\n  mov g_in+56(%rip), %rdi\n"
    "  mov g_in+64(%rip), %r8\n  mov g_in+72(%rip), %r9\n  mov g_in+80(%rip), %r10\n  mov g_in+88(%rip), %r11\n"
    "  mov g_in+96(%rip), %r12\n  mov g_in+104(%rip), %r13\n  mov g_in+112(%rip), %r14\n  mov g_in+120(%rip), %r15\n"
    "  jmp *g_in+136(%rip)\n"
    ".globl guest_return\n"
    "guest_return:\n"
    "  mov %rax, g_out+0(%rip)\n  mov %rcx, g_out+8(%rip)\n  mov %rdx, g_out+16(%rip)\n  mov %rbx, g_out+24(%rip)\n"
    "  mov %rsp, g_out+32(%rip)\n  mov %rbp, g_out+40(%rip)\n  mov %rsi, g_out+48(%rip)\n  mov %rdi, g_out+56(%rip)\n"
    "  mov %r8, g_out+64(%rip)\n  mov %r9, g_out+72(%rip)\n  mov %r10, g_out+80(%rip)\n  mov %r11, g_out+88(%rip)\n"
    "  mov %r12, g_out+96(%rip)\n  mov %r13, g_out+104(%rip)\n  mov %r14, g_out+112(%rip)\n  mov %r15, g_out+120(%rip)\n"
    "  mov g_host_rsp(%rip), %rsp\n"
    "  pushfq\n"
    "  popq g_out+128(%rip)\n"
    "  cld\n"
    "  pop %r15\n  pop %r14\n  pop %r13\n  pop %r12\n  pop %rbp\n  pop %rbx\n"
    "  ret\n");

static sigjmp_buf g_jump;
static volatile sig_atomic_t g_signo;
static uint64_t g_fault_rip, g_fault_addr;
static uint8_t g_initial[SCRATCH_SIZE];
static int g_rwx = 1;

static void on_signal(int signo, siginfo_t *si, void *ctx) {
  ucontext_t *uc = (ucontext_t *)ctx;
  g_signo = signo;
  g_fault_rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
  g_fault_addr = (uint64_t)si->si_addr;
  siglongjmp(g_jump, 1);
}

static void die(const char *what) {
  fprintf(stderr, "harness: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void read_exact(void *p, size_t n) {
  if (n == 0) return;
  if (fread(p, 1, n, stdin) != n) {
    if (feof(stdin)) exit(0);
    die("read");
  }
}

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void put_u32(uint32_t v) { fwrite(&v, 4, 1, stdout); }
static void put_u64(uint64_t v) { fwrite(&v, 8, 1, stdout); }

static void setup(void) {
  void *code = mmap((void *)CODE_BASE, CODE_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (code == MAP_FAILED) {
    /* Some kernels refuse W+X; fall back to flipping RW <-> RX around each case. */
    g_rwx = 0;
    code = mmap((void *)CODE_BASE, CODE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  }
  if (code != (void *)CODE_BASE) die("mmap code at 0x20000000");
  void *data = mmap((void *)SCRATCH_BASE, SCRATCH_SIZE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (data != (void *)SCRATCH_BASE) die("mmap scratch at 0x10000000");

  /* Exit stub: jmp *0(%rip); .quad guest_return */
  uint8_t *stub = (uint8_t *)EXIT_STUB;
  static const uint8_t jmp_rip[6] = {0xff, 0x25, 0, 0, 0, 0};
  memcpy(stub, jmp_rip, 6);
  uint64_t ret = (uint64_t)(uintptr_t)guest_return;
  memcpy(stub + 6, &ret, 8);

  /* User GS is free on x86-64 Linux (glibc's TLS uses FS): point it at the scratch region. */
  if (syscall(SYS_arch_prctl, ARCH_SET_GS, SCRATCH_BASE) != 0) die("arch_prctl(ARCH_SET_GS)");

  static uint8_t altstack[1 << 16];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) die("sigaltstack");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  int sigs[] = {SIGSEGV, SIGILL, SIGFPE, SIGBUS, SIGTRAP, SIGALRM};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    if (sigaction(sigs[i], &sa, NULL) != 0) die("sigaction");
  static char outbuf[1 << 20];
  setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
}

static int status_of(int signo) {
  switch (signo) {
    case SIGSEGV: return ST_SEGV;
    case SIGILL: return ST_ILL;
    case SIGFPE: return ST_FPE;
    case SIGBUS: return ST_BUS;
    case SIGTRAP: return ST_TRAP;
    default: return ST_TIMEOUT;
  }
}

/* First offset >= i where the scratch differs from the initial image (SCRATCH_SIZE if none). */
static size_t next_diff(const uint8_t *now, size_t i) {
  while (i < SCRATCH_SIZE && (i & 7)) {
    if (now[i] != g_initial[i]) return i;
    i++;
  }
  while (i < SCRATCH_SIZE && *(const uint64_t *)(now + i) == *(const uint64_t *)(g_initial + i)) i += 8;
  while (i < SCRATCH_SIZE && now[i] == g_initial[i]) i++;
  return i;
}

static void run_case(uint32_t code_len, uint32_t patch_count) {
  uint64_t head[18];
  read_exact(head, sizeof head);
  if (code_len > EXIT_STUB - CODE_BASE) {
    fprintf(stderr, "harness: code of %u bytes does not fit below the exit stub\n", code_len);
    exit(2);
  }
  if (!g_rwx && mprotect((void *)CODE_BASE, CODE_SIZE, PROT_READ | PROT_WRITE) != 0) die("mprotect rw");
  read_exact((void *)CODE_BASE, code_len);
  if (!g_rwx && mprotect((void *)CODE_BASE, CODE_SIZE, PROT_READ | PROT_EXEC) != 0) die("mprotect rx");

  uint64_t seed = head[17];
  uint64_t *words = (uint64_t *)g_initial;
  for (size_t i = 0; i < SCRATCH_SIZE / 8; i++) words[i] = splitmix64(&seed);
  for (uint32_t p = 0; p < patch_count; p++) {
    uint32_t off_len[2];
    read_exact(off_len, sizeof off_len);
    if ((uint64_t)off_len[0] + off_len[1] > SCRATCH_SIZE) {
      fprintf(stderr, "harness: patch [%u, +%u) is outside the scratch region\n", off_len[0], off_len[1]);
      exit(2);
    }
    read_exact(g_initial + off_len[0], off_len[1]);
  }
  memcpy((void *)SCRATCH_BASE, g_initial, SCRATCH_SIZE);

  memcpy(g_in.regs, head, 16 * 8);
  g_in.regs[4] = STACK_TOP;
  g_in.rflags = (head[16] & STATUS_FLAGS) | 0x2;
  g_in.entry = CODE_BASE;
  memset(&g_out, 0, sizeof g_out);
  g_fault_rip = g_fault_addr = 0;

  int status = ST_OK;
  g_signo = 0;
  alarm(2); /* generated code only jumps forward; a hang is a harness or generator bug */
  if (sigsetjmp(g_jump, 1) == 0) {
    run_guest();
  } else {
    status = status_of(g_signo);
  }
  alarm(0);

  put_u32(MAGIC_RSLT);
  put_u32((uint32_t)status);
  for (int i = 0; i < 16; i++) put_u64(g_out.regs[i]);
  put_u64(g_out.rflags);
  put_u64(g_fault_rip);
  put_u64(g_fault_addr);

  /* Runs of changed bytes, in two passes: count, then emit. */
  const uint8_t *now = (const uint8_t *)SCRATCH_BASE;
  uint32_t runs = 0;
  for (size_t i = next_diff(now, 0); i < SCRATCH_SIZE; i = next_diff(now, i)) {
    size_t j = i;
    while (j < SCRATCH_SIZE && now[j] != g_initial[j]) j++;
    runs++;
    i = j;
  }
  put_u32(runs);
  for (size_t i = next_diff(now, 0); i < SCRATCH_SIZE; i = next_diff(now, i)) {
    size_t j = i;
    while (j < SCRATCH_SIZE && now[j] != g_initial[j]) j++;
    put_u32((uint32_t)i);
    put_u32((uint32_t)(j - i));
    fwrite(now + i, 1, j - i, stdout);
    i = j;
  }
}

int main(void) {
  setup();
  for (;;) {
    uint32_t hdr[4];
    read_exact(hdr, sizeof hdr);
    if (hdr[0] == MAGIC_CASE) run_case(hdr[1], hdr[2]);
    else if (hdr[0] == MAGIC_SYNC) fflush(stdout);
    else {
      fprintf(stderr, "harness: bad record magic 0x%08x\n", hdr[0]);
      return 2;
    }
  }
}
