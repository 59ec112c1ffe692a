/**
 * A real boot to compare boot patching against: boots a bzImage under QEMU TCG (`-cpu <model>`,
 * `nokaslr`, two CPUs so the SMP lock prefixes stay), waits for the panic that ends a boot
 * without a root file system, stops the guest and saves physical memory from 16 MiB
 * (CONFIG_PHYSICAL_START, where the kernel's text lives with KASLR off) with QMP `pmemsave`.
 * The panic comes from mount_root, which runs before free_initmem(), so init text is still intact.
 *
 *   [QEMU_ACCEL=kvm] node --import tsx scripts/qemu-boot-dump.ts <vmlinuz> <out.bin> [cpu] [size-MiB] [extra cmdline]
 *
 * The dump is written under a temporary name and renamed, so a failed boot never leaves one.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const DUMP_BASE_PHYS = 0x1000000;

export interface BootDumpOptions {
  vmlinuz: string;
  out: string;
  cpu: string;
  /** Bytes of physical memory to save from 16 MiB. */
  size: number;
  cmdline?: string;
  timeoutMs?: number;
  /** tcg (default) or kvm: a KVM guest sees KVM's CPUID leaves and takes the paravirt paths. */
  accel?: 'tcg' | 'kvm';
}

function qmp(socket: string, commands: object[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socket);
    const queue = [{ execute: 'qmp_capabilities' }, ...commands];
    let buf = '';
    s.on('error', reject);
    s.on('data', (d) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, i)) as { QMP?: unknown; return?: unknown; error?: { desc: string }; event?: string };
        buf = buf.slice(i + 1);
        if (msg.event !== undefined) continue;
        if (msg.error !== undefined) {
          s.destroy();
          reject(new Error(`QMP: ${msg.error.desc}`));
          return;
        }
        const next = queue.shift();
        if (next === undefined) {
          s.end();
          resolve();
        } else s.write(JSON.stringify(next) + '\n');
      }
    });
  });
}

export async function bootAndDump(o: BootDumpOptions): Promise<{ serial: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'pvpatch-qemu-'));
  const serial = join(dir, 'serial.log');
  const sock = join(dir, 'qmp.sock');
  const tmpOut = `${o.out}.tmp-${process.pid}`;
  const args = [
    '-accel', o.accel ?? 'tcg', '-cpu', o.cpu, '-m', '512', '-smp', '2', '-kernel', o.vmlinuz,
    '-append', `console=ttyS0 nokaslr panic=0 ${o.cmdline ?? ''}`.trim(),
    '-display', 'none', '-monitor', 'none', '-nodefaults', '-serial', `file:${serial}`,
    '-qmp', `unix:${sock},server=on,wait=off`, '-no-reboot',
  ];
  const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d.toString()));
  let exited = false;
  child.on('exit', () => (exited = true));
  const deadline = Date.now() + (o.timeoutMs ?? 240_000);
  try {
    for (;;) {
      await new Promise((r) => setTimeout(r, 250));
      if (exited) throw new Error(`qemu exited early: ${stderr.trim().split('\n').pop() ?? ''}`);
      const log = existsSync(serial) ? readFileSync(serial, 'latin1') : '';
      if (log.includes('end Kernel panic')) break;
      if (Date.now() > deadline) throw new Error('boot did not reach the expected panic in time');
    }
    await qmp(sock, [{ execute: 'stop' }, { execute: 'pmemsave', arguments: { val: DUMP_BASE_PHYS, size: o.size, filename: tmpOut } }]);
    renameSync(tmpOut, o.out);
    const log = readFileSync(serial, 'latin1');
    return { serial: log };
  } finally {
    if (!exited) child.kill('SIGKILL');
    rmSync(tmpOut, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1]?.endsWith('qemu-boot-dump.ts')) {
  const [vmlinuz, out, cpu = 'Skylake-Client', sizeMiB = '64', ...extra] = process.argv.slice(2);
  if (vmlinuz === undefined || out === undefined) {
    console.error('usage: qemu-boot-dump.ts <vmlinuz> <out.bin> [cpu] [size-MiB] [extra cmdline]');
    process.exit(2);
  }
  bootAndDump({ vmlinuz, out, cpu, size: Number(sizeMiB) * 1024 * 1024, cmdline: extra.join(' '), accel: process.env.QEMU_ACCEL === 'kvm' ? 'kvm' : 'tcg' }).then(
    () => console.error(`qemu-boot-dump: wrote ${out}`),
    (err: unknown) => {
      console.error(`qemu-boot-dump: ${(err as Error).message}`);
      process.exit(1);
    },
  );
}
