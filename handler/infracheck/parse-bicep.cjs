// Parses every .bicep file under the given paths with tree-sitter-bicep (wasm,
// run by web-tree-sitter: no native build) and prints file:line:column of each
// ERROR or MISSING node. Exit status 1 when any is found.
// usage: node parse-bicep.cjs NODE_MODULES_DIR PATH...
const fs = require('fs');
const path = require('path');
const [dir, ...roots] = process.argv.slice(2);
const modules = path.resolve(dir);
const Parser = require(path.join(modules, 'web-tree-sitter'));

function files(p) {
  if (!fs.statSync(p).isDirectory()) return [p];
  return fs.readdirSync(p).sort().flatMap((e) => {
    const q = path.join(p, e);
    return fs.statSync(q).isDirectory() ? files(q) : q.endsWith('.bicep') ? [q] : [];
  });
}

function problems(file, node, out) {
  if (node.type === 'ERROR' || node.isMissing) {
    const { row, column } = node.startPosition;
    out.push(`${file}:${row + 1}:${column + 1}: ${node.isMissing ? `missing ${node.type}` : `syntax error at ${JSON.stringify(node.text.slice(0, 30))}`}`);
    return out;
  }
  if (node.hasError) for (const c of node.children) problems(file, c, out);
  return out;
}

(async () => {
  await Parser.init();
  const parser = new Parser();
  parser.setLanguage(await Parser.Language.load(path.join(modules, 'tree-sitter-bicep', 'tree-sitter-bicep.wasm')));
  const all = roots.flatMap(files);
  const found = all.flatMap((f) => problems(f, parser.parse(fs.readFileSync(f, 'utf8')).rootNode, []));
  found.forEach((p) => console.log(p));
  console.log(`${all.length} Bicep files parsed, ${found.length} syntax errors`);
  process.exit(found.length ? 1 : (all.length ? 0 : 2));
})().catch((e) => { console.error(e); process.exit(2); });
