// herd-style final conditions over observed values: exists / ~exists / forall with /\ and \/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCondition, judgeCondition } from '../../src/check/condition.ts';

const SB_STATES = [
  { key: '0:rax=1; 1:rax=0; x=1', count: 5 },
  { key: '0:rax=0; 1:rax=1; x=1', count: 3 },
  { key: '0:rax=1; 1:rax=1; x=1', count: 1 },
];

test('exists holds when some final state satisfies it, ~exists when none does', () => {
  const both0 = 'exists (0:rax=0 /\\ 1:rax=0)';
  assert.equal(judgeCondition(parseCondition(both0), SB_STATES).holds, false);
  assert.equal(judgeCondition(parseCondition('~' + both0), SB_STATES).holds, true);
  const r = judgeCondition(parseCondition('exists (0:rax=1 \\/ 1:rax=0)'), SB_STATES);
  assert.deepEqual([r.holds, r.satisfyingStates, r.satisfyingExecutions], [true, 2, 6]);
});

test('forall needs every state; ~ and != negate; /\\ binds tighter than \\/', () => {
  assert.equal(judgeCondition(parseCondition('forall (x=1)'), SB_STATES).holds, true);
  assert.equal(judgeCondition(parseCondition('forall (0:rax=1)'), SB_STATES).holds, false);
  assert.equal(judgeCondition(parseCondition('forall (~(0:rax=0 /\\ 1:rax=0))'), SB_STATES).holds, true);
  assert.equal(judgeCondition(parseCondition('forall (0:rax!=0 \\/ 1:rax=1 /\\ x=1)'), SB_STATES).holds, true);
});

test('a location the states do not hold, and malformed text, are one clear error each', () => {
  assert.throws(() => judgeCondition(parseCondition('exists (2:rax=0)'), SB_STATES), /names '2:rax', which the final states do not hold \(observed: 0:rax, 1:rax, x\)/);
  assert.throws(() => parseCondition('maybe (0:rax=0)'), /must start with exists, ~exists or forall/);
  assert.throws(() => parseCondition('exists (0:rax=0'), /ends early \(expected '\)'\)/);
  assert.throws(() => parseCondition('exists (0:rax=-1)'), /cannot read|not a non-negative/);
  assert.throws(() => parseCondition('exists (0:rax=0) junk'), /unexpected 'junk'/);
});
