// Runs each case of a differential corpus through aws-local-stepfunctions and prints the
// outcomes as JSON (one object per case, in order). tests/workflow_differential.rs runs the
// same cases through Careline's interpreter and compares.
//
// A case: {"name", "definition", "input"}. Every Task answers as `task` below says, the same
// rule the Rust side applies; waits and retry back-offs take no time.
//
// Usage: node run.mjs CASES.json
import { readFileSync } from 'node:fs';
import { StateMachine } from 'aws-local-stepfunctions';

// aws-local-stepfunctions 3 calls Promise.withResolvers (Node.js 22); Debian's Node.js is 20.
Promise.withResolvers ??= function withResolvers() {
  let resolve, reject;
  const promise = new Promise((yes, no) => { resolve = yes; reject = no; });
  return { promise, resolve, reject };
};

// A Task's answer: the error named by the input's `fail` while this state has seen that
// same input fewer than `fail_times` times before (always, without `fail_times`); otherwise
// {"task": STATE, "got": INPUT}.
function task(state, counts) {
  return async (input) => {
    const key = state + '\u0000' + JSON.stringify(input);
    const seen = counts.get(key) ?? 0;
    counts.set(key, seen + 1);
    if (input && typeof input === 'object' && !Array.isArray(input) && typeof input.fail === 'string'
        && (typeof input.fail_times !== 'number' || seen < input.fail_times)) {
      const e = new Error(`${input.fail} in ${state}`);
      e.name = input.fail;
      throw e;
    }
    return { task: state, got: input };
  };
}

// Every state of a machine, its branches and Map processors included.
function* states(machine) {
  for (const [name, s] of Object.entries(machine.States ?? {})) {
    yield [name, s];
    for (const b of s.Branches ?? []) yield* states(b);
    const p = s.ItemProcessor ?? s.Iterator;
    if (p) yield* states(p);
  }
}

const cases = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = [];
for (const c of cases) {
  const counts = new Map();
  const overrides = { taskResourceLocalHandlers: {}, waitTimeOverrides: {}, retryIntervalOverrides: {} };
  for (const [name, s] of states(c.definition)) {
    if (s.Type === 'Task') overrides.taskResourceLocalHandlers[name] = task(name, counts);
    if (s.Type === 'Wait') overrides.waitTimeOverrides[name] = 0;
    if (s.Retry) overrides.retryIntervalOverrides[name] = 0;
  }
  try {
    const sm = new StateMachine(c.definition, { validationOptions: { checkArn: false } });
    const output = await sm.run(c.input, { overrides }).result;
    out.push({ name: c.name, status: 'SUCCEEDED', output: output ?? null });
  } catch (e) {
    const cause = e.cause ?? e;
    out.push({ name: c.name, status: 'FAILED', error: cause.name, cause: cause.message });
  }
}
process.stdout.write(JSON.stringify(out));
