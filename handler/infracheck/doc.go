// Package infracheck holds the tests of infra/: the drift test between the
// Bicep and the code (app settings, the custom role, Event Grid filters and
// delivery, function folders, API versions, the siteConfig keys Flex accepts,
// publishing policies, the .bicepparam files), which reads the templates
// through the tree-sitter-bicep syntax tree parse-bicep.cjs --json dumps and
// fails on any syntax error (planted ones included), and a run of
// infra/deploy.sh and the azd hook against a recording fake az (testdata/az).
package infracheck
