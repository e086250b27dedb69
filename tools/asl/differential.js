// Runs recorded executions again on a second, independent States Language interpreter
// (aws-local-stepfunctions), every Task answered with what the local stack recorded for it.
// stdin:  {"cases": [{"name", "definition", "input", "context", "attempts": {state: [{"output"} | {"error", "cause"}]}}]}
// stdout: {name: {"path": [state...], "inputs": {state: [input...]}, "status", "output" | "error", "cause"}}
"use strict";
// aws-local-stepfunctions 3 uses Promise.withResolvers, which node 20 lacks.
if (!Promise.withResolvers) {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
const { StateMachine, ExecutionError } = require("aws-local-stepfunctions");

function namedError(name, cause) {
  const error = new Error(cause ?? "");
  error.name = name;
  return error;
}

async function replay(testCase) {
  const inputs = {};
  const handlers = {};
  const retryOverrides = {};
  for (const [name, state] of Object.entries(testCase.definition.States)) {
    if (state.Retry) retryOverrides[name] = 0;
    if (state.Type !== "Task") continue;
    const attempts = [...(testCase.attempts[name] ?? [])];
    handlers[name] = async (input) => {
      (inputs[name] ??= []).push(input);
      const attempt = attempts.shift();
      if (attempt === undefined) throw namedError("Differential.NoRecording", `no recorded attempt left for ${name}`);
      if ("error" in attempt) throw namedError(attempt.error, attempt.cause);
      return attempt.output;
    };
  }
  const machine = new StateMachine(testCase.definition, { validationOptions: { checkArn: false, checkPaths: false } });
  const execution = machine.run(testCase.input, {
    overrides: { taskResourceLocalHandlers: handlers, retryIntervalOverrides: retryOverrides },
    context: testCase.context,
  });
  const path = [];
  const logs = (async () => {
    for await (const event of execution.eventLogs) {
      if (event.type === "StateEntered") path.push(event.state.name);
    }
  })();
  const report = { path, inputs };
  try {
    report.output = await execution.result;
    report.status = "SUCCEEDED";
  } catch (error) {
    report.status = error instanceof ExecutionError ? "FAILED" : "ERROR";
    const cause = error.cause ?? error;
    report.error = cause.name;
    report.cause = cause.message;
  }
  await logs;
  return report;
}

(async () => {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const { cases } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const results = {};
  for (const testCase of cases) results[testCase.name] = await replay(testCase);
  process.stdout.write(JSON.stringify(results));
})().catch((error) => {
  console.error(error.stack);
  process.exit(2);
});
