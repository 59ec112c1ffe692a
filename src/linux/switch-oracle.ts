/**
 * The atomic-switch oracle (src/kernel/atomic-switch.ts) driven by the real kernel's code: the
 * switch probes (switch-probes.ts) say where a real slowpath starts and returns, where a native
 * unlock `movb $0,(%rdi)` runs at a real unlock site, and where the real pv_kick site runs with or
 * without reaching kvm_kick_cpu. The v2 INT3 handler tells it of the native unlocks it emulates.
 */
import type { Vcpu } from '../machine/vcpu.ts';
import type { Insn } from '../x86/insn.ts';
import type { Hazard } from '../machine/events.ts';
import { Reg } from '../x86/registers.ts';
import { AtomicSwitchOracle, isNativeUnlock } from '../kernel/atomic-switch.ts';
import type { Flavor } from '../kernel/pv-ops.ts';
import type { LinuxGuest } from './guest.ts';
import type { LockSwitchObserver } from './switch-probes.ts';

export class LinuxAtomicSwitch implements LockSwitchObserver {
  readonly oracle: AtomicSwitchOracle;
  /** Per vCPU, the stack pointer at each running slowpath's entry (innermost last). */
  private readonly entries: number[][];
  /** Per vCPU, the CPU its pv_kick in progress kicks (-1: none). */
  private readonly kicking: number[];

  constructor(guest: LinuxGuest) {
    const m = guest.machine;
    this.oracle = new AtomicSwitchOracle(m, [], guest.boot.kernel.image.symbols.addressOf('kvm_kick_cpu') ?? 0, false);
    this.entries = m.vcpus.map(() => []);
    this.kicking = m.vcpus.map(() => -1);
    guest.switchObserver = this;
  }

  slowpathEnter(c: Vcpu, flavor: Flavor, address: number): Hazard | undefined {
    this.entries[c.id]!.push(c.getAddr(Reg.RSP));
    return this.oracle.slowpathEnter(c.id, c.getAddr(Reg.RDI), flavor, address);
  }

  /** After the RET the stack pointer is 8 above the entry's (the return address popped). */
  slowpathReturn(c: Vcpu): void {
    const e = this.entries[c.id]!;
    if (e.length > 0 && e[e.length - 1]! + 8 === c.getAddr(Reg.RSP)) {
      e.pop();
      this.oracle.slowpathExit(c.id);
    }
  }

  unlockSite(c: Vcpu, insn: Insn, address: number): Hazard | undefined {
    return isNativeUnlock(insn.bytes) ? this.oracle.nativeUnlock(c.id, c.getAddr(Reg.RDI), address) : undefined;
  }

  kickSite(c: Vcpu): void {
    this.kicking[c.id] = c.getAddr(Reg.RDI);
    this.oracle.kickBegin(c.id);
  }

  /** The first probe past the site ends the kick (a padded CALL passes two). */
  kickReturn(c: Vcpu, address: number): Hazard | undefined {
    const target = this.kicking[c.id]!;
    if (target < 0) return undefined;
    this.kicking[c.id] = -1;
    return this.oracle.kickEnd(c.id, target, address);
  }

  kvmKickCpu(c: Vcpu): void {
    this.oracle.kvmKickCpuEntered(c.id);
  }
}
