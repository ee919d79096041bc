// Parses every .bicep file under the given paths with tree-sitter-bicep (wasm,
// run by web-tree-sitter: no native build) and prints file:line:column of each
// ERROR or MISSING node. Exit status 1 when any is found, 2 when no file is.
// usage: node parse-bicep.cjs NODE_MODULES_DIR PATH... [--json]
// --json prints {file: [declaration...]} on stdout (errors go to stderr) for
// the drift test, file relative to its PATH, for each file that parses: each
// declaration is {kind, name, type, decorators, line, if, loop, value, text}.
// A value is JSON where Bicep is literal (objects, arrays, plain strings,
// numbers, booleans, null); any other expression is {"$": its source, "args":
// its operands as values}. text is the value as written, comments blanked.
const fs = require('fs');
const path = require('path');
const args = process.argv.slice(2);
const json = args.includes('--json');
const [dir, ...roots] = args.filter((a) => a !== '--json');
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

const kids = (n) => n.namedChildren.filter((c) => c.type !== 'comment');
const escapes = { "\\'": "'", '\\\\': '\\', '\\n': '\n', '\\r': '\r', '\\t': '\t', '\\$': '$' };

function value(n, code) {
  const k = kids(n);
  switch (n.type) {
    case 'object':
      return Object.fromEntries(k.filter((p) => p.type === 'object_property').map((p) => {
        const key = value(kids(p)[0], code);
        return [typeof key === 'string' ? key : key.$, value(kids(p)[1], code)];
      }));
    case 'array': return k.map((e) => value(e, code));
    case 'number': return Number(n.text);
    case 'boolean': return n.text === 'true';
    case 'null': return null;
    case 'identifier': case 'property_identifier': return { $: n.text };
    case 'string':
      if (k.every((c) => c.type === 'string_content' || c.type === 'escape_sequence')) {
        return k.map((c) => escapes[c.text] ?? c.text).join('');
      }
  }
  return { $: code.slice(n.startIndex, n.endIndex), args: k.map((c) => value(c, code)) };
}

function declarations(root, code) {
  const out = [];
  let decorators = [];
  for (const n of kids(root)) {
    if (n.type === 'decorators') {
      decorators = kids(n).map((d) => (kids(d)[0].childForFieldName('function') ?? kids(d)[0]).text);
      continue;
    }
    const [name, ...rest] = kids(n);
    const kind = { parameter_declaration: 'param', variable_declaration: 'var' }[n.type] ?? n.type.replace(/_declaration$/, '');
    const d = { kind, name: name?.text, decorators, line: n.startPosition.row + 1 };
    decorators = [];
    if (['resource', 'module', 'param', 'output', 'type'].includes(kind) && rest.length && rest[0].type !== 'if_statement') {
      const t = rest.shift();
      d.type = t.type === 'string' ? value(t, code) : t.text;
    }
    let v = rest[rest.length - 1];
    for (;;) {
      if (v?.type === 'for_statement') { d.loop = true; v = v.childForFieldName('body'); }
      else if (v?.type === 'if_statement') { d.if = kids(kids(v)[0])[0].text; v = kids(v)[1]; }
      else break;
    }
    if (v) Object.assign(d, { value: value(v, code), text: code.slice(v.startIndex, v.endIndex) });
    out.push(d);
  }
  return out;
}

(async () => {
  await Parser.init();
  const parser = new Parser();
  parser.setLanguage(await Parser.Language.load(path.join(modules, 'tree-sitter-bicep', 'tree-sitter-bicep.wasm')));
  const all = roots.flatMap((r) => files(r).map((f) => [r, f]));
  const dump = {};
  const found = all.flatMap(([r, f]) => {
    const src = fs.readFileSync(f, 'utf8');
    const root = parser.parse(src).rootNode;
    if (json && !root.hasError) { // a broken tree has no declarations to trust
      let code = src;
      for (const c of root.descendantsOfType('comment')) {
        code = code.slice(0, c.startIndex) + code.slice(c.startIndex, c.endIndex).replace(/[^\n]/g, ' ') + code.slice(c.endIndex);
      }
      const rel = path.relative(r, f).split(path.sep).join('/') || path.basename(f);
      dump[rel] = declarations(root, code);
    }
    return problems(f, root, []);
  });
  const log = json ? console.error : console.log;
  found.forEach((p) => log(p));
  log(`${all.length} Bicep files parsed, ${found.length} syntax errors`);
  if (json) console.log(JSON.stringify(dump));
  process.exitCode = found.length ? 1 : (all.length ? 0 : 2); // not exit(): stdout may still be draining
})().catch((e) => { console.error(e); process.exitCode = 2; });
