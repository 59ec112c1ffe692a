/**
 * What an explorer explores (DESIGN.md §3): a booted system that starts any number of executions
 * from one snapshot. Every strategy (random, PCT, DPOR, replay) drives an Execution through the
 * machine's Chooser and reads back one Verdict; machine scenarios and guests both implement it.
 */
import type { Chooser } from '../machine/chooser.ts';
import type { InjectionBudget, Machine, RunResult } from '../machine/machine.ts';
import type { Verdict } from './verdict.ts';

export interface ExecutionLimits {
  /** Stop after this many instructions (the depth bound of a run). */
  maxInstructions?: number;
  /** NMIs and IRQs the chooser may inject. */
  inject?: InjectionBudget;
}

export interface ExecutionResult {
  verdict: Verdict;
  run: RunResult;
  /** A canonical text of the final state the scenario observes (registers, memory, lock counters). */
  finalState: string;
  /**
   * What this execution reached, each point once (a protocol phase, a patched site, a code label),
   * for the explorer's coverage table; absent when the subject reports none.
   */
  coverage?: readonly string[];
}

export interface Execution {
  /** The execution's own machine, forked from the snapshot (its trace and decision log start empty). */
  readonly machine: Machine;
  /** Run to the end under `chooser` and judge the run; called once per execution. */
  run(chooser: Chooser, limits?: ExecutionLimits): ExecutionResult;
  /**
   * A hash of the state this execution keeps beyond its machine's (what protocols, oracles and the
   * host keep in TypeScript) that, with the machine's, decides its future; undefined when it cannot
   * say now. Absent: the subject cannot say at all, and DPOR caches none of its states.
   */
  stateHash?(): number | undefined;
}

/** `E`: what its executions are, for a caller that reads more of one than its result (a guest's counters). */
export interface Subject<E extends Execution = Execution> {
  /** What a user calls it (the scenario file, or a test's name). */
  readonly name: string;
  readonly vcpus: number;
  /** The run's limits unless a caller overrides them (the scenario's injections and bound). */
  readonly limits: ExecutionLimits;
  /**
   * The step where what the subject is about begins (a guest's hint step: its patch window follows),
   * for a search directed there (src/check/dpor.ts's DporWindow); absent: the whole run.
   */
  readonly focusStep?: number;
  /**
   * A fresh execution from the boot snapshot: everything a guest, protocol, oracle or host keeps is
   * forked. A seeded strategy passes its execution's seed, for a subject with randomness of its own
   * (a guest's workload); a subject without any ignores it.
   */
  start(seed?: number): E;
}
