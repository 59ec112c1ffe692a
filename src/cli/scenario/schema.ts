/**
 * The JSON Schema of a machine scenario (validated with Ajv): a machine, its memory, guest code
 * (assembly text or hex bytes), initial vCPU state, interrupt handlers, a scheduling strategy and
 * what may be injected. Users write these in YAML or JSON without touching TypeScript.
 */
import { injectionPlanProperties } from './injection-plan.ts';

const address = {
  description: 'an integer or a hex string such as "0x1000" or "-0x10"',
  anyOf: [{ type: 'integer' }, { type: 'string', pattern: '^-?(0x[0-9a-fA-F_]+|[0-9_]+)$' }],
};
const addressOrLabel = {
  description: 'an address, or the name of a label defined in the code',
  anyOf: [{ type: 'integer' }, { type: 'string', minLength: 1 }],
};

/** Events a strategy may inject into one run (each is a scheduling decision the run records). */
export const MAX_INJECTED = 1_000_000;

/** How a scenario is scheduled (shared by machine and guest scenarios). */
export const scheduleSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    strategy: { enum: ['timed', 'random', 'pct', 'replay', 'first'] },
    seed: { type: 'integer', minimum: 0 },
    replay: { type: 'string' },
  },
} as const;

export const machineScenarioSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['machine', 'memory', 'code', 'vcpus'],
  properties: {
    name: { type: 'string' },
    description: { type: 'string' },
    machine: {
      type: 'object',
      additionalProperties: false,
      required: ['vcpus'],
      properties: {
        vcpus: { type: 'integer', minimum: 1, maximum: 256 },
        tso: { type: 'boolean' },
        stopOnHazard: { type: 'boolean' },
      },
    },
    memory: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['at', 'size', 'perms'],
        properties: {
          name: { type: 'string' },
          at: address,
          size: address,
          perms: { type: 'string', pattern: '^[rwx-]+$' },
        },
      },
    },
    code: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['at'],
        properties: {
          name: { type: 'string' },
          at: address,
          asm: { type: 'string' },
          hex: { type: 'string' },
        },
        oneOf: [{ required: ['asm'] }, { required: ['hex'] }],
      },
    },
    data: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['at', 'hex'],
        properties: { at: address, hex: { type: 'string' } },
      },
    },
    vcpus: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['rip'],
        properties: {
          rip: addressOrLabel,
          rsp: address,
          gsBase: address,
          interrupts: { type: 'boolean', description: 'RFLAGS.IF at start (default false)' },
          halted: { type: 'boolean' },
          regs: {
            type: 'object',
            propertyNames: { pattern: '^(r[a-d]x|r[sd]i|r[sb]p|r(8|9|1[0-5]))$' },
            additionalProperties: address,
          },
        },
      },
    },
    idt: {
      type: 'object',
      description: 'interrupt vector (decimal or hex) → handler address or label',
      propertyNames: { pattern: '^(0x[0-9a-fA-F]+|[0-9]+)$' },
      additionalProperties: addressOrLabel,
    },
    schedule: scheduleSchema,
    inject: {
      type: 'object',
      additionalProperties: false,
      properties: {
        nmis: { type: 'integer', minimum: 0, maximum: MAX_INJECTED },
        irqs: { type: 'integer', minimum: 0, maximum: MAX_INJECTED },
        vector: { type: 'integer', minimum: 32, maximum: 255 },
        cpus: { type: 'array', items: { type: 'integer', minimum: 0 } },
        ...injectionPlanProperties,
      },
    },
    observe: {
      type: 'object',
      description: 'the final state: registers ("<cpu>:<reg>") and memory read when an execution ends (litmus tests)',
      additionalProperties: false,
      properties: {
        registers: { type: 'array', items: { type: 'string', pattern: '^[0-9]+:(r[a-d]x|r[sd]i|r[sb]p|r(8|9|1[0-5]))$' } },
        memory: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['at'],
            properties: {
              name: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$', description: 'how --expect names it (default [0x...])' },
              at: addressOrLabel,
              size: { enum: [1, 2, 4, 8], description: 'bytes, little-endian (default 4, a C int as in herd)' },
            },
          },
        },
      },
    },
    run: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxInstructions: { type: 'integer', minimum: 1 },
        stopWhenHalted: { type: 'array', items: { type: 'integer', minimum: 0 }, description: 'stop once these vCPUs have all halted' },
      },
    },
  },
} as const;
