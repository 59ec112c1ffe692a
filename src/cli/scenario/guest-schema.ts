/**
 * The JSON Schema of a guest scenario: the pvpatch guest kernel on a KVM (or bare-metal) host,
 * with a lock workload, optional host over-commit, and a scheduling strategy.
 */
import { scheduleSchema } from './schema.ts';
import { injectionPlanProperties, type InjectionPlanSpec } from './injection-plan.ts';

export const guestScenarioSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['guest'],
  properties: {
    name: { type: 'string' },
    description: { type: 'string' },
    guest: {
      type: 'object',
      additionalProperties: false,
      required: ['vcpus'],
      properties: {
        vcpus: { type: 'integer' },
        platform: { type: 'string' },
        flavor: { type: 'string', description: 'auto (decide as kvm_spinlock_init does), native or pv' },
        nopvspin: { type: 'boolean' },
        hypercall: { enum: ['vmcall', 'vmmcall'] },
        spinThreshold: { type: 'integer', minimum: 1 },
        tso: { type: 'boolean' },
      },
    },
    host: {
      type: 'object',
      additionalProperties: false,
      properties: {
        vendor: { enum: ['intel', 'amd'] },
        pvUnhalt: { type: 'boolean' },
        realtime: { type: 'boolean' },
        pcpus: { type: 'integer' },
        overcommit: { type: 'number', description: 'vCPUs per physical CPU; physical CPUs = vcpus / overcommit' },
        sliceUs: { type: 'number', exclusiveMinimum: 0 },
        switchUs: { type: 'number', minimum: 0 },
        wakeUs: { type: 'number', minimum: 0 },
        ple: { type: 'boolean', description: 'pause-loop exiting (default true, KVM ple_window 4096 / ple_gap 128)' },
      },
    },
    workload: {
      type: 'object',
      additionalProperties: false,
      properties: {
        iterations: { type: 'integer', minimum: 1 },
        criticalLoops: { type: 'integer', minimum: 0 },
        thinkLoops: { type: 'integer', minimum: 0 },
        taskLocks: { type: 'integer', minimum: 1 },
        irqLockEvery: { type: 'integer', minimum: 0 },
        extraSites: { type: 'integer', minimum: 0, description: 'cold .parainstructions lock-op sites to add (Debian 6.1 per-op mix)' },
      },
    },
    inject: {
      type: 'object',
      additionalProperties: false,
      properties: { nmis: { type: 'integer', minimum: 0 }, irqs: { type: 'integer', minimum: 0 }, ...injectionPlanProperties },
    },
    switch: {
      type: 'object',
      additionalProperties: false,
      required: ['hint', 'atStep'],
      description: 'the host changes KVM_HINTS_REALTIME at a step; the guest switches its pv_lock_ops (v2, v1) or retargets its slowpath (text-poke-bp)',
      properties: {
        protocol: { enum: ['v2', 'v1', 'text-poke-bp'] },
        hint: { enum: ['revoke', 'grant'] },
        atStep: { type: 'integer', minimum: 0 },
        patcherCpu: { type: 'integer', minimum: 0 },
        maxRetries: { type: 'integer', minimum: 0 },
      },
    },
    schedule: scheduleSchema,
    run: {
      type: 'object',
      additionalProperties: false,
      properties: { maxInstructions: { type: 'integer', minimum: 1 } },
    },
  },
} as const;

export interface GuestScenario {
  name?: string;
  description?: string;
  guest: { vcpus: number; platform?: string; flavor?: string; nopvspin?: boolean; hypercall?: 'vmcall' | 'vmmcall'; spinThreshold?: number; tso?: boolean };
  host?: { vendor?: 'intel' | 'amd'; pvUnhalt?: boolean; realtime?: boolean; pcpus?: number; overcommit?: number; sliceUs?: number; switchUs?: number; wakeUs?: number; ple?: boolean };
  workload?: { iterations?: number; criticalLoops?: number; thinkLoops?: number; taskLocks?: number; irqLockEvery?: number; extraSites?: number };
  inject?: { nmis?: number; irqs?: number } & InjectionPlanSpec;
  switch?: { protocol?: 'v2' | 'v1' | 'text-poke-bp'; hint: 'revoke' | 'grant'; atStep: number; patcherCpu?: number; maxRetries?: number };
  schedule?: { strategy?: 'timed' | 'random' | 'pct' | 'replay' | 'first'; seed?: number; replay?: string };
  run?: { maxInstructions?: number };
}
