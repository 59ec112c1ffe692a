/**
 * What, beside the scenario file, decides the subject `check` explores and `merge` rebuilds: the
 * switch protocol (--protocol), a stock broken variant (--variant) or a user's protocol module
 * (--protocol-file). Carried in check's JSON, in each worker's data and in every replay command,
 * so every process that rebuilds the subject builds the same one.
 */
import type { SwitchProtocol } from '../patching/hint-switch.ts';
import type { StockVariant } from '../patching/variants.ts';
import type { Subject } from '../check/subject.ts';
import { loadProtocolFile } from './protocol-file.ts';
import { scenarioSubject } from './scenario/subject.ts';

export interface SubjectChoice {
  readonly protocol?: SwitchProtocol;
  readonly variant?: StockVariant;
  /** The protocol module's path, as given. */
  readonly protocolFile?: string;
}

/** The choice as its fields alone (absent ones left out), for JSON and worker data. */
export function choiceOf(o: SubjectChoice): SubjectChoice {
  return {
    ...(o.protocol !== undefined ? { protocol: o.protocol } : {}),
    ...(o.variant !== undefined ? { variant: o.variant } : {}),
    ...(o.protocolFile !== undefined ? { protocolFile: o.protocolFile } : {}),
  };
}

/** The `pvpatch run` flags that rebuild the same subject. */
export function choiceArgs(o: SubjectChoice): string[] {
  return [
    ...(o.protocol !== undefined ? ['--protocol', o.protocol] : []),
    ...(o.variant !== undefined ? ['--variant', o.variant] : []),
    ...(o.protocolFile !== undefined ? ['--protocol-file', o.protocolFile] : []),
  ];
}

/** One line naming the choice, for comparing shards: '' when the scenario decides alone. */
export function choiceKey(o: SubjectChoice): string {
  return choiceArgs(o).join(' ');
}

/** Build the scenario's subject under the choice (loading the protocol module, if one is named). */
export async function chosenSubject(path: string, o: SubjectChoice): Promise<Subject> {
  const protocolFile = o.protocolFile !== undefined ? await loadProtocolFile(o.protocolFile) : undefined;
  return scenarioSubject(path, {
    ...(o.protocol !== undefined ? { protocol: o.protocol } : {}),
    ...(o.variant !== undefined ? { variant: o.variant } : {}),
    ...(protocolFile !== undefined ? { protocolFile } : {}),
  });
}
