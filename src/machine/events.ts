/**
 * What the machine reports: hazards (violations of the x86 rules for code that other CPUs may be
 * executing) and trace events. Later layers export these (src/trace/).
 */

/** Where each byte of a fetched instruction came from, for a hazard report. */
export interface ByteOrigin {
  offset: number;
  value: number;
  /** vCPU id that wrote it last; -1 = loader, -2 = host. */
  writer: number;
  /** Text write sequence number of that write. */
  seq: number;
}

export type Hazard =
  | {
      kind: 'cmc-unsynchronized';
      cpu: number;
      /** Address of the instruction being fetched. */
      address: number;
      /** The bytes as they are in memory now. */
      bytes: number[];
      /** Bytes written by another agent after this vCPU's last serializing event (SDM 8.1.3). */
      unsynchronized: ByteOrigin[];
      /** Text write sequence number at this vCPU's last serializing event. */
      serializedAt: number;
    }
  | {
      kind: 'return-into-rewritten';
      cpu: number;
      /** The return address being jumped to. */
      returnAddress: number;
      /** Text write sequence number when the address was pushed. */
      pushedAt: number;
      /** Bytes of the instruction that started at the return address when it was pushed. */
      before: number[];
      /** The same bytes now. */
      after: number[];
    }
  | OracleHazard;

/**
 * A finding of an oracle above the machine (DESIGN.md §6: a kernel-level hazard kind belongs to
 * the layer that raises it, here it is carried without being understood). The machine stops on it
 * and reports it like its own; `oracle` names it (e.g. 'non-atomic-switch', defined by
 * src/kernel/atomic-switch.ts) and `data` is that oracle's own typed record. A layer narrows it
 * with its own guard on `oracle`.
 */
export interface OracleHazard<O extends string = string, D = unknown> {
  kind: 'oracle';
  oracle: O;
  cpu: number;
  /** The instruction or site where the oracle fired. */
  address: number;
  /** One line for a user, without the oracle's name. */
  message: string;
  data: D;
}

export type HazardKind = Hazard['kind'];

/** What a report calls a hazard: its kind, or for an oracle's, the oracle's name. */
export function hazardName(h: Hazard): string {
  return h.kind === 'oracle' ? h.oracle : h.kind;
}

export type MachineEvent =
  | { type: 'hazard'; step: number; cpu: number; hazard: Hazard }
  | { type: 'interrupt'; step: number; cpu: number; vector: number; rip: number }
  | { type: 'nmi'; step: number; cpu: number; rip: number }
  | { type: 'exception'; step: number; cpu: number; vector: number; rip: number }
  | { type: 'iret'; step: number; cpu: number; rip: number }
  | { type: 'halt'; step: number; cpu: number; rip: number }
  | { type: 'wake'; step: number; cpu: number; reason: 'interrupt' | 'nmi' | 'kick' }
  | { type: 'hypercall'; step: number; cpu: number; kind: 'vmcall' | 'vmmcall'; nr: number }
  | { type: 'cmc-choice'; step: number; cpu: number; address: number; executed: 'old' | 'new' };

export type MachineEventType = MachineEvent['type'];
