/** A scenario file that cannot be used: one line saying where and what is wrong. */
export class ScenarioError extends Error {
  readonly userFacing = true;
  constructor(message: string) {
    super(message);
    this.name = 'ScenarioError';
  }
}
