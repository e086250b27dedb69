// Runs recorded executions again on a second, independent States Language interpreter
// (aws-local-stepfunctions), every Task answered with what the local stack recorded for it.
// stdin:  {"cases": [{"name", "definition", "input", "context", "byInput",
//                      "attempts": {state: [{"output"} | {"error", "cause"}, with "input" when byInput]}}]}
// byInput (a workflow with Map states, whose iterations run at once): each Task call is answered
// with a recorded attempt of that state whose parameters were the same, instead of the next in order.
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
// aws-local-stepfunctions 3.0.0 is loaded with two corrections, each where it differs from Step
// Functions (docs/LOCAL_STACK.md, "Two interpreters"); if a line to correct is not there (another
// version), this stops rather than compare against a wrong interpreter.
// 1. Each run's context object has Execution.Input set to that run's input, and a Map's iterations
//    are runs of their own: inside one, $$.Execution.Input was the iteration's input. In Step
//    Functions it is the execution's input everywhere.
// 2. Paths are evaluated with jsonpath-plus's wrap: false, so an indefinite path (wildcard, slice,
//    filter, deep scan) matching nothing failed, and one matching once gave the bare value. Step
//    Functions evaluates paths as Jayway JsonPath does: an indefinite path is always the list of its
//    matches (the local stack's indefinite_paths_as_lists says the same of moto).
const INDEFINITE = "/\\[\\s*(\\*|\\?|-?\\d*\\s*:|[^\\]]*,)|\\.\\*|\\.\\./";
const CORRECTIONS = [
  ["Input: input,\n        StartTime:", "Input: options.runOptions?.context?.Execution?.Input ?? input,\n        StartTime:"],
  ["json: context ?? null, wrap: false });", `json: context ?? null, wrap: ${INDEFINITE}.test(pathExpression) });`],
  ["path: pathExpression, json, wrap: false });", `path: pathExpression, json, wrap: ${INDEFINITE}.test(pathExpression) });`],
];
function loadInterpreter() {
  const fs = require("fs");
  const Module = require("module");
  const path = require("path");
  const file = require.resolve("aws-local-stepfunctions");
  let source = fs.readFileSync(file, "utf8");
  for (const [wrong, right] of CORRECTIONS) {
    if (!source.includes(wrong)) throw new Error(`${file}: the line to correct is not there: ${wrong}`);
    source = source.replace(wrong, right);
  }
  const loaded = new Module(file, module);
  loaded.filename = file;
  loaded.paths = Module._nodeModulePaths(path.dirname(file));
  loaded._compile(source, file);
  return loaded.exports;
}
const { StateMachine, ExecutionError } = loadInterpreter();

function namedError(name, cause) {
  const error = new Error(cause ?? "");
  error.name = name;
  return error;
}

// Timestamps differ: $$.State.EnteredTime is one value here, each state's own on the local stack.
const TIMESTAMP = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})/g;
const canonical = (value) => JSON.stringify(value).replace(TIMESTAMP, "<time>");

function* everyState(states) {
  for (const [name, state] of Object.entries(states)) {
    yield [name, state];
    const processor = state.ItemProcessor ?? state.Iterator;
    if (processor) yield* everyState(processor.States);
    for (const branch of state.Branches ?? []) yield* everyState(branch.States);
  }
}

async function replay(testCase) {
  const inputs = {};
  const handlers = {};
  const retryOverrides = {};
  for (const [name, state] of everyState(testCase.definition.States)) {
    if (state.Retry) retryOverrides[name] = 0;
    if (state.Type !== "Task") continue;
    const attempts = [...(testCase.attempts[name] ?? [])];
    handlers[name] = async (input) => {
      (inputs[name] ??= []).push(input);
      const index = testCase.byInput ? attempts.findIndex((a) => canonical(a.input) === canonical(input)) : 0;
      const attempt = index < 0 ? undefined : attempts.splice(index, 1)[0];
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
