/**
 * The JSON Schema of a guest scenario: the pvpatch guest kernel on a KVM (or bare-metal) host,
 * with a lock workload, optional host over-commit, and a scheduling strategy.
 */
import { STOCK_VARIANT_NAMES, type StockVariant } from '../../patching/variant-names.ts';
import { scheduleSchema, MAX_INJECTED } from './schema.ts';
import { injectionPlanProperties, type InjectionPlanSpec } from './injection-plan.ts';
import { GUEST_MAX_VCPUS, MAX_LOCKS } from '../../kernel/layout.ts';

/**
 * Ranges that keep a scenario's requests within what a run can hold: the host keeps per-pCPU
 * arrays (so pcpus, and overcommit near 0, are bounded), and each extra site is guest text.
 */
const MAX_PCPUS = 1024;
const MAX_HOST_US = 10_000_000;
const MAX_EXTRA_SITES = 100_000;

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
        vcpus: { type: 'integer', minimum: 1, maximum: GUEST_MAX_VCPUS },
        kernel: { enum: ['imitation', 'debian-6.1'], description: "imitation (pvpatch's own guest kernel, the default) or debian-6.1 (the real Linux 6.1 lock code from Debian's vmlinux)" },
        platform: { type: 'string' },
        flavor: { type: 'string', description: 'auto (decide as kvm_spinlock_init does), native or pv' },
        nopvspin: { type: 'boolean' },
        hypercall: { enum: ['vmcall', 'vmmcall'] },
        spinThreshold: { type: 'integer', minimum: 1, maximum: 1_000_000_000 },
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
        pcpus: { type: 'integer', minimum: 1, maximum: MAX_PCPUS },
        overcommit: { type: 'number', minimum: GUEST_MAX_VCPUS / MAX_PCPUS, maximum: GUEST_MAX_VCPUS, description: 'vCPUs per physical CPU; physical CPUs = vcpus / overcommit' },
        sliceUs: { type: 'number', exclusiveMinimum: 0, maximum: MAX_HOST_US },
        switchUs: { type: 'number', minimum: 0, maximum: MAX_HOST_US },
        wakeUs: { type: 'number', minimum: 0, maximum: MAX_HOST_US },
        ple: { type: 'boolean', description: 'pause-loop exiting (default true, KVM ple_window 4096 / ple_gap 128)' },
      },
    },
    workload: {
      type: 'object',
      additionalProperties: false,
      properties: {
        iterations: { type: 'integer', minimum: 1, maximum: 100_000_000 },
        criticalLoops: { type: 'integer', minimum: 0, maximum: 1_000_000 },
        thinkLoops: { type: 'integer', minimum: 0, maximum: 1_000_000 },
        taskLocks: { type: 'integer', minimum: 1, maximum: MAX_LOCKS - 2 },
        irqLockEvery: { type: 'integer', minimum: 0 },
        extraSites: { type: 'integer', minimum: 0, maximum: MAX_EXTRA_SITES, description: 'cold .parainstructions lock-op sites to add (Debian 6.1 per-op mix)' },
      },
    },
    inject: {
      type: 'object',
      additionalProperties: false,
      properties: { nmis: { type: 'integer', minimum: 0, maximum: MAX_INJECTED }, irqs: { type: 'integer', minimum: 0, maximum: MAX_INJECTED }, ...injectionPlanProperties },
    },
    switch: {
      type: 'object',
      additionalProperties: false,
      required: ['hint', 'atStep'],
      description: 'the host changes KVM_HINTS_REALTIME at a step; the guest switches its pv_lock_ops (v2, v1) or retargets its slowpath (text-poke-bp)',
      properties: {
        protocol: { enum: ['v2', 'v1', 'text-poke-bp'] },
        variant: { enum: STOCK_VARIANT_NAMES, description: 'a stock broken variant of the protocol (a negative control: the checks must catch it)' },
        hint: { enum: ['revoke', 'grant'] },
        atStep: { type: 'integer', minimum: 0 },
        patcherCpu: { type: 'integer', minimum: 0, maximum: GUEST_MAX_VCPUS - 1 },
        maxRetries: { type: 'integer', minimum: 0, maximum: 10_000 },
        back: { type: 'boolean', description: 'and back: once switched, the host restores the hint and the guest switches back (the real-kernel guest)' },
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
  guest: { vcpus: number; kernel?: 'imitation' | 'debian-6.1'; platform?: string; flavor?: string; nopvspin?: boolean; hypercall?: 'vmcall' | 'vmmcall'; spinThreshold?: number; tso?: boolean };
  host?: { vendor?: 'intel' | 'amd'; pvUnhalt?: boolean; realtime?: boolean; pcpus?: number; overcommit?: number; sliceUs?: number; switchUs?: number; wakeUs?: number; ple?: boolean };
  workload?: { iterations?: number; criticalLoops?: number; thinkLoops?: number; taskLocks?: number; irqLockEvery?: number; extraSites?: number };
  inject?: { nmis?: number; irqs?: number } & InjectionPlanSpec;
  switch?: { protocol?: 'v2' | 'v1' | 'text-poke-bp'; variant?: StockVariant; hint: 'revoke' | 'grant'; atStep: number; patcherCpu?: number; maxRetries?: number; back?: boolean };
  schedule?: { strategy?: 'timed' | 'random' | 'pct' | 'replay' | 'first'; seed?: number; replay?: string };
  run?: { maxInstructions?: number };
}
