/**
 * Generates src/elf/cpu-models.json, the CPU presets of `pvpatch inspect --features`, from real
 * boots: for each QEMU CPU model it boots the cached Debian 6.1 cloud kernel under QEMU TCG
 * (`-cpu <model>`, two CPUs, nokaslr) with a one-program initramfs whose /init mounts /proc, copies
 * /proc/cpuinfo to the serial console and powers off. From CPU 0's block it keeps the vendor,
 * family and model, the `flags` that come from CPUID leaves (the capability words Linux fills
 * from CPUID: its synthetic and scattered words are what boot patching itself decides, see
 * src/elf/boot-cpu.ts), and the `bugs` line (the X86_BUG_* bits that kernel set).
 *
 *   node --import tsx scripts/cpu-models-qemu.ts [model ...]     (default: the project's four)
 *
 * Needs qemu-system-x86_64, gcc with a static libc, and the kernel of scripts/get-kernel.sh.
 * Writes the JSON under a temporary name and renames it, so a failed boot leaves the old file.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { featureByName } from '../src/elf/cpufeatures.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'src', 'elf', 'cpu-models.json');
export const DEFAULT_MODELS = ['Skylake-Client', 'Haswell', 'EPYC', 'qemu64'];

/**
 * Linux 6.1.y's capability words that hold CPUID leaves' bits as the CPU reports them
 * (arch/x86/include/asm/cpufeatures.h): 0 (1:EDX), 1 (8000_0001:EDX), 4 (1:ECX), 6 (8000_0001:ECX),
 * 9 (7:0 EBX), 10 (D:1 EAX), 12 (7:1 EAX), 13 (8000_0008:EBX), 14 (6:EAX), 15 (8000_000A:EDX),
 * 16 (7:0 ECX), 17 (8000_0007:EBX), 18 (7:0 EDX), 19 (8000_001F:EAX), 20 (8000_0021:EAX).
 */
export const CPUID_WORDS = new Set([0, 1, 4, 6, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20]);

const INIT_C = String.raw`
#include <fcntl.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/reboot.h>
static void put(int fd, const char *s) { while (*s) { if (write(fd, s, 1) < 0) return; s++; } }
int main(void) {
  int con = open("/dev/console", O_WRONLY);
  mount("proc", "/proc", "proc", 0, 0);
  int fd = open("/proc/cpuinfo", O_RDONLY);
  char buf[4096];
  ssize_t n;
  put(con, "\nPVPATCH-CPUINFO-BEGIN\n");
  while (fd >= 0 && (n = read(fd, buf, sizeof buf)) > 0) if (write(con, buf, n) < 0) break;
  put(con, "PVPATCH-CPUINFO-END\n");
  sync();
  reboot(RB_POWER_OFF);
  return 0;
}
`;

/** One cpio "newc" entry (the initramfs format, Documentation/driver-api/early-userspace). */
function cpioEntry(name: string, mode: number, data: Buffer, rdevMajor = 0, rdevMinor = 0, ino = 1): Buffer {
  const hex = (v: number) => v.toString(16).padStart(8, '0');
  const nameBuf = Buffer.from(`${name}\0`);
  const header = '070701' + [ino, mode, 0, 0, 1, 0, data.length, 0, 0, rdevMajor, rdevMinor, nameBuf.length, 0].map(hex).join('');
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const head = Buffer.concat([Buffer.from(header), nameBuf]);
  return Buffer.concat([head, pad(head.length), data, pad(data.length)]);
}

function initramfs(dir: string): string {
  const src = join(dir, 'init.c'), bin = join(dir, 'init');
  writeFileSync(src, INIT_C);
  const cc = spawnSync('gcc', ['-static', '-Os', '-o', bin, src], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`gcc -static failed: ${(cc.stderr || cc.error?.message || '').trim().split('\n')[0]}`);
  const S_IFDIR = 0o040000, S_IFCHR = 0o020000, S_IFREG = 0o100000;
  const archive = Buffer.concat([
    cpioEntry('dev', S_IFDIR | 0o755, Buffer.alloc(0), 0, 0, 1),
    cpioEntry('dev/console', S_IFCHR | 0o600, Buffer.alloc(0), 5, 1, 2),
    cpioEntry('proc', S_IFDIR | 0o755, Buffer.alloc(0), 0, 0, 3),
    cpioEntry('init', S_IFREG | 0o755, readFileSync(bin), 0, 0, 4),
    cpioEntry('TRAILER!!!', 0, Buffer.alloc(0), 0, 0, 0),
  ]);
  const out = join(dir, 'initramfs.cpio');
  writeFileSync(out, archive);
  return out;
}

/** Boot `cpu` and return its serial log once /init has powered the guest off. */
async function bootCpuinfo(vmlinuz: string, initrd: string, cpu: string, dir: string, timeoutMs = 600_000): Promise<string> {
  const serial = join(dir, `serial-${cpu}.log`);
  const args = ['-accel', 'tcg', '-cpu', cpu, '-m', '512', '-smp', '2', '-kernel', vmlinuz, '-initrd', initrd,
    '-append', 'console=ttyS0 nokaslr panic=-1 quiet', '-display', 'none', '-monitor', 'none', '-nodefaults',
    '-serial', `file:${serial}`, '-no-reboot'];
  const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (c) => { clearTimeout(t); resolve(c); });
  });
  const log = existsSync(serial) ? readFileSync(serial, 'latin1') : '';
  if (!log.includes('PVPATCH-CPUINFO-END')) {
    const tail = log.trim().split('\n').slice(-3).join(' | ');
    throw new Error(`-cpu ${cpu}: the boot did not print /proc/cpuinfo (exit ${code}; serial: ${tail || 'empty'}; ${stderr.trim().split('\n').pop() ?? ''})`);
  }
  return log;
}

export interface GeneratedModel {
  name: string;
  vendor: 'intel' | 'amd';
  family: number;
  model: number;
  cpuid: string[];
  bugs: string[];
}

/** CPU 0's block of a /proc/cpuinfo copy: the preset's fields. */
export function parseCpuinfo(name: string, log: string): GeneratedModel {
  const text = log.slice(log.indexOf('PVPATCH-CPUINFO-BEGIN'), log.indexOf('PVPATCH-CPUINFO-END'));
  const block = text.split(/\r?\n\r?\n/).find((b) => /^processor\s*:\s*0\s*$/m.test(b));
  if (block === undefined) throw new Error(`-cpu ${name}: no processor 0 in /proc/cpuinfo`);
  const field = (k: string): string => {
    const m = new RegExp(`^${k}\\s*:\\s*(.*?)\\s*$`, 'm').exec(block);
    if (m === null) throw new Error(`-cpu ${name}: /proc/cpuinfo has no '${k}'`);
    return m[1]!;
  };
  const vendorId = field('vendor_id');
  const vendor = vendorId === 'GenuineIntel' ? 'intel' : vendorId === 'AuthenticAMD' ? 'amd' : undefined;
  if (vendor === undefined) throw new Error(`-cpu ${name}: vendor ${vendorId} is neither Intel nor AMD`);
  const flags = field('flags').split(/\s+/).filter((f) => f !== '');
  const cpuid = flags.filter((f) => {
    const feat = featureByName(f.toUpperCase());
    if (feat === undefined) throw new Error(`-cpu ${name}: flag '${f}' is not a Linux 6.1.y feature pvpatch knows`);
    return CPUID_WORDS.has(Math.floor(feat.bit / 32));
  });
  const bugs = field('bugs').split(/\s+/).filter((b) => b !== '').map((b) => b.toUpperCase());
  return { name, vendor, family: Number(field('cpu family')), model: Number(field('model')), cpuid, bugs };
}

async function main(): Promise<void> {
  const models = process.argv.slice(2).length > 0 ? process.argv.slice(2) : DEFAULT_MODELS;
  const cache = process.env.PVPATCH_CACHE ?? join(ROOT, '.cache');
  const pointer = join(cache, 'kernel', 'current-6.1-cloud');
  if (!existsSync(pointer)) throw new Error(`no cached 6.1 cloud kernel (run scripts/get-kernel.sh)`);
  const release = readFileSync(pointer, 'utf8').trim();
  const vmlinuz = join(cache, 'kernel', release, 'vmlinuz');
  const qemu = spawnSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' });
  if (qemu.status !== 0) throw new Error('qemu-system-x86_64 not installed (scripts/setup-qemu.sh)');
  const dir = mkdtempSync(join(tmpdir(), 'pvpatch-cpuinfo-'));
  try {
    const initrd = initramfs(dir);
    const out: GeneratedModel[] = [];
    for (const cpu of models) {
      const t0 = Date.now();
      // A boot that ends without the copy (seen once under heavy host load) is tried again.
      let log: string | undefined;
      for (let attempt = 1; log === undefined; attempt++) {
        try {
          log = await bootCpuinfo(vmlinuz, initrd, cpu, dir);
        } catch (e) {
          if (attempt === 3) throw e;
          console.error(`cpu-models-qemu: ${(e as Error).message}; booting again`);
        }
      }
      out.push(parseCpuinfo(cpu, log));
      console.error(`cpu-models-qemu: -cpu ${cpu}: ${out.at(-1)!.cpuid.length} CPUID flags, ${out.at(-1)!.bugs.length} bugs (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    }
    const doc = {
      generatedBy: 'scripts/cpu-models-qemu.ts',
      qemu: qemu.stdout.split('\n')[0]!.trim(),
      accel: 'tcg',
      kernel: release,
      models: out,
    };
    const tmp = `${OUT}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(doc, null, 2) + '\n');
    renameSync(tmp, OUT);
    console.error(`cpu-models-qemu: wrote ${OUT}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1]?.endsWith('cpu-models-qemu.ts')) {
  main().catch((e: unknown) => {
    console.error(`cpu-models-qemu: ${(e as Error).message}`);
    process.exit(1);
  });
}
