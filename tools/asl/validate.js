// Validates ASL files with AWS's language service (what the AWS Toolkit shows in the editor) and with
// asl-validator. Prints one JSON line per file: {"file", "languageService": [...], "aslValidator": [...]}.
// Exit 1 when either finds an error. Usage: node validate.js FILE...
"use strict";
const fs = require("fs");
const { getLanguageService, TextDocument, DiagnosticSeverity } = require("amazon-states-language-service");
const aslValidator = require("asl-validator");

async function check(file) {
  const text = fs.readFileSync(file, "utf8");
  const document = TextDocument.create(`file://${file}`, "json", 0, text);
  const service = getLanguageService({});
  const diagnostics = await service.doValidation(document, service.parseJSONDocument(document));
  const languageService = diagnostics
    .filter((d) => d.severity === DiagnosticSeverity.Error)
    .map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
  const { isValid, errorsText } = aslValidator(JSON.parse(text));
  const aslErrors = isValid ? [] : errorsText("\n").split("\n");
  return { file, languageService, aslValidator: aslErrors };
}

(async () => {
  let failed = false;
  for (const file of process.argv.slice(2)) {
    const result = await check(file);
    failed = failed || result.languageService.length > 0 || result.aslValidator.length > 0;
    console.log(JSON.stringify(result));
  }
  process.exit(failed ? 1 : 0);
})().catch((error) => {
  console.error(error.message);
  process.exit(2);
});
