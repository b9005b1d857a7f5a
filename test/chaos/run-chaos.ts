// `npm run test:chaos [-- --seed S --nemesis kill,pause,partition,latency,disk,membership,migrate
// --minutes M --members N --teeth --keep-folder]`: one chaos run (run.ts). Prints its seed first and its
// verdict last; exits 0 when the run passed, 1 when it found something, 2 when it could not run.
// Rerun with the printed seed (and the same options) to replay the same fault schedule.
import { parseArgs } from 'node:util';

import { formatReport, runChaos } from './run.ts';
import { NEMESES, parseNemeses } from './schedule.ts';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    nemesis: { type: 'string', default: NEMESES.join(',') },
    minutes: { type: 'string', default: '5' },
    members: { type: 'string', default: '3' },
    teeth: { type: 'boolean', default: false },
    'keep-folder': { type: 'boolean', default: false },
  },
});

function fail(message: string): never {
  console.error(`test:chaos: ${message}`);
  process.exit(2);
}

const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) fail(`--seed must be an integer in [0, 2^32), not ${JSON.stringify(values.seed)}`);
const minutes = Number(values.minutes);
if (!(minutes > 0 && minutes <= 240)) fail(`--minutes must be a number in (0, 240], not ${JSON.stringify(values.minutes)}`);
const members = Number(values.members);
if (!(members === 3 || members === 5)) fail(`--members must be 3 or 5, not ${JSON.stringify(values.members)}`);
let nemeses;
try {
  nemeses = parseNemeses(values.nemesis);
} catch (error) {
  fail((error as Error).message);
}

console.log(`seed ${seed} (replay: npm run test:chaos -- --seed ${seed} --nemesis ${nemeses.join(',')} --minutes ${minutes} --members ${members}${values.teeth ? ' --teeth' : ''})`);
try {
  const report = await runChaos({ seed, nemeses, runMs: Math.round(minutes * 60_000), members, teeth: values.teeth, keepFolder: values['keep-folder'] });
  for (const line of formatReport(report)) console.log(line);
  process.exit(report.passed ? 0 : 1);
} catch (error) {
  console.error((error as Error).stack ?? String(error));
  console.log(`verdict: COULD NOT RUN — seed ${seed}`);
  process.exit(2);
}
